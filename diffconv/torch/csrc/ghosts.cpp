// The ghost padding of diffconv's torch layer and its transpose, one pass each over a contiguous
// (N, C, *L) tensor. Python builds one Plan per layer geometry (diffconv/torch/_native.py) from
// the matrices in diffconv.boundary; this file only applies them. Each ghost is the sum of the
// samples its row names (nonzero weights only: a NaN in a sample a ghost does not read stays out
// of it), accumulated in at least float32.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <ATen/OpMathType.h>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

using Rows = std::vector<std::vector<std::pair<int64_t, double>>>;

// One side of an axis: ghost r (its position `first + r` in the padded axis) is the sum of
// w[t] * sample idx[t] for t in [ptr[r], ptr[r+1]); sample indices are of the unpadded axis.
struct Side {
  int64_t first = 0;
  std::vector<int64_t> ptr{0}, idx;
  std::vector<double> w;
  int64_t rows() const { return (int64_t)ptr.size() - 1; }
};

struct Axis {
  int64_t length, before, after;
  Side low, high;
  int64_t extent() const { return before + length + after; }
};

Side make_side(const Rows& rows, int64_t first) {
  Side s;
  s.first = first;
  for (const auto& r : rows) {
    for (const auto& t : r) { s.idx.push_back(t.first); s.w.push_back(t.second); }
    s.ptr.push_back((int64_t)s.idx.size());
  }
  return s;
}

constexpr int64_t kChunk = 256;

// dst[0:n] = sum_t w_t * src_t[0:n] (the sources `block + (offset + idx_t) * stride`).
template <typename scalar_t>
inline void combine(scalar_t* dst, const scalar_t* block, int64_t stride, int64_t offset, const Side& s,
                    int64_t r, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t0 = s.ptr[r], t1 = s.ptr[r + 1];
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t m = std::min(kChunk, n - c);
    acc_t acc[kChunk];
    std::fill(acc, acc + m, acc_t(0));
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* src = block + (offset + s.idx[t]) * stride + c;
      const acc_t wt = (acc_t)s.w[t];
      for (int64_t i = 0; i < m; ++i) acc[i] += wt * (acc_t)src[i];
    }
    for (int64_t i = 0; i < m; ++i) dst[c + i] = (scalar_t)acc[i];
  }
}

// The transpose: dst_t[0:n] += w_t * src[0:n] for each tap of ghost r.
template <typename scalar_t>
inline void spread(scalar_t* block, const scalar_t* src, int64_t stride, int64_t offset, const Side& s,
                   int64_t r, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t t = s.ptr[r]; t < s.ptr[r + 1]; ++t) {
    scalar_t* dst = block + (offset + s.idx[t]) * stride;
    const acc_t wt = (acc_t)s.w[t];
    for (int64_t i = 0; i < n; ++i) dst[i] = (scalar_t)((acc_t)dst[i] + wt * (acc_t)src[i]);
  }
}

// Offset of block `b` of the blocks (P x interior of axes[0:a]) in the padded layout.
inline int64_t block_offset(int64_t b, const std::vector<Axis>& axes, int64_t a, const std::vector<int64_t>& pstride) {
  int64_t off = 0;
  for (int64_t k = a - 1; k >= 0; --k) {
    off += (axes[k].before + b % axes[k].length) * pstride[k];
    b /= axes[k].length;
  }
  return off + b * (pstride.empty() ? 0 : pstride[0] * axes[0].extent());
}

}  // namespace

class Plan {
 public:
  explicit Plan(const std::vector<std::tuple<int64_t, int64_t, int64_t, Rows, Rows>>& spec) {
    for (const auto& a : spec) {
      int64_t L = std::get<0>(a), lo = std::get<1>(a), hi = std::get<2>(a);
      axes_.push_back(Axis{L, lo, hi, make_side(std::get<3>(a), 0), make_side(std::get<4>(a), lo + L)});
    }
  }

  // (N, C, *L) -> (N, C, *(before + L + after)), contiguous.
  torch::Tensor pad(const torch::Tensor& input) const {
    const int64_t nd = (int64_t)axes_.size();
    TORCH_CHECK(input.dim() == nd + 2 && input.is_contiguous(), "ghost pad: expected a contiguous (N, C, *L) tensor");
    TORCH_CHECK(at::isFloatingType(input.scalar_type()), "ghost pad: expected a floating-point tensor");
    std::vector<int64_t> ext(input.sizes().begin(), input.sizes().end());
    for (int64_t a = 0; a < nd; ++a) {
      TORCH_CHECK(input.size(2 + a) == axes_[a].length, "ghost pad: axis length mismatch");
      ext[2 + a] = axes_[a].extent();
    }
    RECORD_FUNCTION("diffconv::ghost_pad", std::vector<c10::IValue>({input}));
    auto out = torch::empty(ext, input.options());
    const auto ps = padded_strides(ext);
    const int64_t P = ext[0] * ext[1];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "ghost_pad", [&] {
      const scalar_t* x = input.data_ptr<scalar_t>();
      scalar_t* y = out.data_ptr<scalar_t>();
      const Axis& last = axes_[nd - 1];
      const int64_t L = last.length;
      // Each row of the last axis: copied in, then its own ghosts.
      each_block(nd - 1, P, ps, row_grain(L), y, [&](int64_t r, scalar_t* row) {
        std::memcpy(row + last.before, x + r * L, L * sizeof(scalar_t));
        for (const Side* s : {&last.low, &last.high})
          for (int64_t g = 0; g < s->rows(); ++g) combine(row + s->first + g, row, 1, last.before, *s, g, 1);
      });
      // Earlier axes, last first: ghost hyperplanes over the full extent of the later axes.
      for (int64_t a = nd - 2; a >= 0; --a) {
        const Axis& ax = axes_[a];
        if (ax.before == 0 && ax.after == 0) continue;
        const int64_t inner = ps[a];
        each_block(a, P, ps, 1, y, [&](int64_t, scalar_t* blk) {
          for (const Side* s : {&ax.low, &ax.high})
            for (int64_t g = 0; g < s->rows(); ++g)
              combine(blk + (s->first + g) * inner, blk, inner, ax.before, *s, g, inner);
        });
      }
    });
    return out;
  }

  // The transpose of pad: (N, C, *(before + L + after)) -> (N, C, *L). Adds the ghosts' gradient
  // onto their samples in place, on `padded` itself where it is contiguous.
  torch::Tensor fold(const torch::Tensor& padded) const {
    const int64_t nd = (int64_t)axes_.size();
    TORCH_CHECK(padded.dim() == nd + 2, "ghost fold: expected a (N, C, *L) tensor");
    RECORD_FUNCTION("diffconv::ghost_fold", std::vector<c10::IValue>({padded}));
    torch::Tensor grad = padded.contiguous();
    std::vector<int64_t> ext(grad.sizes().begin(), grad.sizes().end()), shape = ext;
    for (int64_t a = 0; a < nd; ++a) {
      TORCH_CHECK(grad.size(2 + a) == axes_[a].extent(), "ghost fold: axis length mismatch");
      shape[2 + a] = axes_[a].length;
    }
    auto out = torch::empty(shape, grad.options());
    const auto ps = padded_strides(ext);
    const int64_t P = ext[0] * ext[1];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "ghost_fold", [&] {
      scalar_t* gy = grad.data_ptr<scalar_t>();
      scalar_t* gx = out.data_ptr<scalar_t>();
      for (int64_t a = 0; a + 1 < nd; ++a) {
        const Axis& ax = axes_[a];
        if (ax.before == 0 && ax.after == 0) continue;
        const int64_t inner = ps[a];
        each_block(a, P, ps, 1, gy, [&](int64_t, scalar_t* blk) {
          for (const Side* s : {&ax.low, &ax.high})
            for (int64_t g = 0; g < s->rows(); ++g)
              spread(blk, blk + (s->first + g) * inner, inner, ax.before, *s, g, inner);
        });
      }
      const Axis& last = axes_[nd - 1];
      const int64_t L = last.length;
      each_block(nd - 1, P, ps, row_grain(L), gy, [&](int64_t r, scalar_t* row) {
        scalar_t* dst = gx + r * L;
        std::memcpy(dst, row + last.before, L * sizeof(scalar_t));
        for (const Side* s : {&last.low, &last.high})
          for (int64_t g = 0; g < s->rows(); ++g) spread(dst, row + s->first + g, 1, 0, *s, g, 1);
      });
    });
    return out;
  }

 private:
  std::vector<Axis> axes_;

  // fn(b, block) for each block b of axis a (one per sample, channel and interior position of
  // the earlier axes; `block` its start in the padded layout at `data`), in parallel.
  template <typename scalar_t, typename F>
  void each_block(int64_t a, int64_t P, const std::vector<int64_t>& ps, int64_t grain, scalar_t* data,
                  const F& fn) const {
    at::parallel_for(0, P * interior(a), grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) fn(b, data + block_offset(b, axes_, a, ps));
    });
  }

  // Rows of the last axis per thread: about 32k samples.
  static int64_t row_grain(int64_t L) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(L, 1)); }

  int64_t interior(int64_t a) const {
    int64_t n = 1;
    for (int64_t k = 0; k < a; ++k) n *= axes_[k].length;
    return n;
  }

  // ps[a]: elements between neighbours along axis a of the padded layout.
  std::vector<int64_t> padded_strides(const std::vector<int64_t>& ext) const {
    const int64_t nd = (int64_t)axes_.size();
    std::vector<int64_t> ps(nd);
    int64_t s = 1;
    for (int64_t a = nd - 1; a >= 0; --a) { ps[a] = s; s *= ext[2 + a]; }
    return ps;
  }
};

// A transposed layer's ghost ring (diffconv/torch/_ring.py builds it): Q rows over the flattened
// spatial positions of a contiguous (N, C, *S) tensor, row q the sum of w[t] * position idx[t]
// for t in [ptr[q], ptr[q+1]), and buckets of slots, bucket b holding taps[b] groups of equally
// many slots, each slot naming one row (or Q, none: a zero slot); a row may fill several slots.
// A bucket's gathered slots are the batches of a matrix product per tap and channel group:
// (taps * groups, slots per tap * N, C / groups).
class Slots {
 public:
  Slots(const Rows& rows, std::vector<std::vector<int64_t>> buckets, std::vector<int64_t> taps)
      : side_(make_side(rows, 0)), buckets_(std::move(buckets)), taps_(std::move(taps)) {
    TORCH_CHECK(buckets_.size() == taps_.size(), "ring slots: one tap count per bucket");
    for (size_t b = 0; b < buckets_.size(); ++b) {
      TORCH_CHECK(taps_[b] > 0 && buckets_[b].size() % taps_[b] == 0, "ring slots: slots must fill the taps evenly");
      for (int64_t q : buckets_[b]) TORCH_CHECK(q >= 0 && q <= side_.rows(), "ring slots: row out of range");
    }
  }

  // (N, C, *S) -> per bucket (taps * groups, P * N, C / groups), the slots' rows.
  std::vector<torch::Tensor> gather(const torch::Tensor& src, int64_t groups) const {
    TORCH_CHECK(src.dim() >= 2 && src.is_contiguous() && at::isFloatingType(src.scalar_type()) && groups > 0 &&
                    src.size(1) % groups == 0,
                "ring gather: expected a contiguous floating-point (N, C, *S) tensor, C divisible by groups");
    RECORD_FUNCTION("diffconv::ring_gather", std::vector<c10::IValue>({src}));
    const int64_t N = src.size(0), C = src.size(1), NC = N * C, S = src.numel() / std::max<int64_t>(NC, 1);
    const int64_t Q = side_.rows(), c = C / groups;
    auto rows = torch::empty({Q + 1, NC}, src.options());
    std::vector<torch::Tensor> out;
    for (size_t b = 0; b < buckets_.size(); ++b)
      out.push_back(torch::empty({taps_[b] * groups, (int64_t)buckets_[b].size() / taps_[b] * N, c}, src.options()));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "ring_gather", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* x = src.data_ptr<scalar_t>();
      scalar_t* r = rows.data_ptr<scalar_t>();
      std::fill(r + Q * NC, r + (Q + 1) * NC, scalar_t(0));
      if (S <= kBlockedMax) {
        at::parallel_for(0, (NC + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t c0 = b0 * kBlock; c0 < std::min(b1 * kBlock, NC); c0 += kBlock) {
            const int64_t m = std::min(kBlock, NC - c0);
            for (int64_t q = 0; q < Q; ++q) {
              acc_t acc[kBlock] = {};
              for (int64_t t = side_.ptr[q]; t < side_.ptr[q + 1]; ++t) {
                const scalar_t* col = x + c0 * S + side_.idx[t];
                const acc_t wt = (acc_t)side_.w[t];
                for (int64_t i = 0; i < m; ++i) acc[i] += wt * (acc_t)col[i * S];
              }
              for (int64_t i = 0; i < m; ++i) r[q * NC + c0 + i] = (scalar_t)acc[i];
            }
          }
        });
      } else {
        at::parallel_for(0, NC, 16, [&](int64_t c0, int64_t c1) {
          for (int64_t ch = c0; ch < c1; ++ch) {
            const scalar_t* chan = x + ch * S;
            for (int64_t q = 0; q < Q; ++q) {
              acc_t acc = 0;
              for (int64_t t = side_.ptr[q]; t < side_.ptr[q + 1]; ++t) acc += (acc_t)side_.w[t] * (acc_t)chan[side_.idx[t]];
              r[q * NC + ch] = (scalar_t)acc;
            }
          }
        });
      }
      // out[b][(tap, group), (p, n), :] = rows[slot (tap, p)][n, group's channels]
      for (size_t b = 0; b < buckets_.size(); ++b) {
        const auto& slots = buckets_[b];
        const int64_t P = (int64_t)slots.size() / taps_[b];
        scalar_t* y = out[b].data_ptr<scalar_t>();
        at::parallel_for(0, (int64_t)slots.size(), 16, [&](int64_t s0, int64_t s1) {
          for (int64_t k = s0; k < s1; ++k) {
            const int64_t tap = k / P, p = k % P;
            if (groups == 1) {                       // the slot's N x C block is contiguous
              std::memcpy(y + (tap * P * N + p * N) * C, r + slots[k] * NC, NC * sizeof(scalar_t));
              continue;
            }
            for (int64_t n = 0; n < N; ++n)
              for (int64_t gi = 0; gi < groups; ++gi)
                std::memcpy(y + ((tap * groups + gi) * P * N + p * N + n) * c, r + slots[k] * NC + n * C + gi * c,
                            c * sizeof(scalar_t));
          }
        });
      }
    });
    return out;
  }

  // The transpose, in place: dst[n, c, idx_t] += w_t * src[b][(tap, group), (p, n), c'] for each
  // slot of each bucket and the taps of its row.
  void scatter_add_(torch::Tensor& dst, const std::vector<torch::Tensor>& src) const {
    TORCH_CHECK(dst.dim() >= 2 && dst.is_contiguous() && src.size() == buckets_.size(),
                "ring scatter: expected a contiguous (N, C, *S) tensor and one tensor per bucket");
    const int64_t N = dst.size(0), C = dst.size(1), NC = N * C, S = dst.numel() / std::max<int64_t>(NC, 1);
    const int64_t groups = src.empty() ? 1 : src[0].size(0) / taps_[0];
    for (size_t b = 0; b < buckets_.size(); ++b)
      TORCH_CHECK(src[b].is_contiguous() && src[b].dim() == 3 && src[b].scalar_type() == dst.scalar_type() &&
                      src[b].size(0) == taps_[b] * groups && groups > 0 && C % groups == 0 &&
                      src[b].size(1) == (int64_t)buckets_[b].size() / taps_[b] * N && src[b].size(2) == C / groups,
                  "ring scatter: expected per bucket a contiguous (taps * groups, P * N, C / groups) tensor of "
                  "the destination's dtype");
    RECORD_FUNCTION("diffconv::ring_scatter", std::vector<c10::IValue>({dst}));
    const int64_t Q = side_.rows(), c = C / groups;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "ring_scatter", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      scalar_t* x = dst.data_ptr<scalar_t>();
      // Blocks of channels within one sample and group: their places in a slot are contiguous.
      const int64_t per = (c + kBlock - 1) / kBlock;
      at::parallel_for(0, N * groups * per, 1, [&](int64_t b0, int64_t b1) {
        std::vector<acc_t> rows((Q + 1) * kBlock);                 // per row: its slots' sum
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t n = blk / per / groups, gi = blk / per % groups, cc = blk % per * kBlock;
          const int64_t m = std::min(kBlock, c - cc), c0 = n * C + gi * c + cc;
          std::fill(rows.begin(), rows.end(), acc_t(0));             // (Q + 1) x kBlock
          for (size_t b = 0; b < buckets_.size(); ++b) {
            const auto& slots = buckets_[b];
            const int64_t P = (int64_t)slots.size() / taps_[b];
            const scalar_t* place = src[b].data_ptr<scalar_t>() + (gi * P * N + n) * c + cc;
            for (int64_t k = 0; k < (int64_t)slots.size(); ++k) {
              acc_t* row = rows.data() + slots[k] * kBlock;
              const scalar_t* slot = place + ((k / P) * groups * P * N + (k % P) * N) * c;
              for (int64_t i = 0; i < m; ++i) row[i] += (acc_t)slot[i];
            }
          }
          if (S <= kBlockedMax) {
            for (int64_t q = 0; q < Q; ++q) {
              const acc_t* row = rows.data() + q * kBlock;
              for (int64_t t = side_.ptr[q]; t < side_.ptr[q + 1]; ++t) {
                scalar_t* col = x + c0 * S + side_.idx[t];
                const acc_t wt = (acc_t)side_.w[t];
                for (int64_t i = 0; i < m; ++i) col[i * S] = (scalar_t)((acc_t)col[i * S] + wt * row[i]);
              }
            }
          } else {
            for (int64_t i = 0; i < m; ++i) {
              scalar_t* chan = x + (c0 + i) * S;
              for (int64_t q = 0; q < Q; ++q) {
                const acc_t v = rows[q * kBlock + i];
                for (int64_t t = side_.ptr[q]; t < side_.ptr[q + 1]; ++t)
                  chan[side_.idx[t]] = (scalar_t)((acc_t)chan[side_.idx[t]] + (acc_t)side_.w[t] * v);
              }
            }
          }
        }
      });
    });
  }

 private:
  Side side_;
  std::vector<std::vector<int64_t>> buckets_;
  std::vector<int64_t> taps_;
  // Channels per block: each slot reads (or writes) a block's channels at once. On maps of more
  // than kBlockedMax positions a block's channels lie 4 KiB or more apart and evict each other
  // from the cache: there the rows are read (and written) channel after channel.
  static constexpr int64_t kBlock = 64, kBlockedMax = 1000;
};

// A transposed weight (C_in, C_out/groups, *k), contiguous, read per kernel tap: the batches of
// the ring's products, one bucket of taps each. taps_of: per bucket (taps * groups, C_in/groups,
// C_out/groups), tap-major copies of its taps; add_taps_: the transpose, dw[..., tap] += share,
// in place. Both go through the weight in blocks of rows, tap after tap: the taps' copies lie
// `rows` apart, often a multiple of 4 KiB, and written side by side they would evict each other.
template <typename F>
void each_tap_block(const torch::Tensor& w, const std::vector<std::vector<int64_t>>& buckets, const F& fn) {
  const int64_t rows = w.size(0) * w.size(1), K = w.numel() / std::max<int64_t>(rows, 1);
  for (const auto& taps : buckets)
    for (int64_t t : taps) TORCH_CHECK(t >= 0 && t < K, "ring taps: tap out of range");
  at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t b = r0; b < r1; b += 256)
      for (size_t k = 0; k < buckets.size(); ++k)
        for (size_t t = 0; t < buckets[k].size(); ++t)
          for (int64_t r = b; r < std::min(b + 256, r1); ++r) fn(k, (int64_t)t * rows + r, r * K + buckets[k][t]);
  });
}

std::vector<torch::Tensor> taps_of(const torch::Tensor& w, const std::vector<std::vector<int64_t>>& buckets,
                                   int64_t groups) {
  TORCH_CHECK(w.dim() >= 3 && w.is_contiguous() && groups > 0 && w.size(0) % groups == 0,
              "ring taps: expected a contiguous (C_in, C_out/groups, *k) weight");
  RECORD_FUNCTION("diffconv::ring_taps", std::vector<c10::IValue>({w}));
  std::vector<torch::Tensor> out;
  for (const auto& taps : buckets)
    out.push_back(torch::empty({(int64_t)taps.size() * groups, w.size(0) / groups, w.size(1)}, w.options()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "ring_taps", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    std::vector<scalar_t*> dst;
    for (auto& o : out) dst.push_back(o.data_ptr<scalar_t>());
    each_tap_block(w, buckets, [&](size_t k, int64_t at, int64_t from) { dst[k][at] = src[from]; });
  });
  return out;
}

void add_taps_(torch::Tensor& dw, const std::vector<torch::Tensor>& shares,
               const std::vector<std::vector<int64_t>>& buckets) {
  TORCH_CHECK(dw.dim() >= 3 && dw.is_contiguous() && shares.size() == buckets.size(),
              "ring taps: expected a contiguous weight gradient and one share per bucket");
  for (size_t k = 0; k < shares.size(); ++k)
    TORCH_CHECK(shares[k].is_contiguous() && shares[k].scalar_type() == dw.scalar_type() &&
                    shares[k].numel() == (int64_t)buckets[k].size() * dw.size(0) * dw.size(1),
                "ring taps: expected per bucket a contiguous (taps * groups, ...) share of the gradient's dtype");
  RECORD_FUNCTION("diffconv::ring_add_taps", std::vector<c10::IValue>({dw}));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dw.scalar_type(), "ring_add_taps", [&] {
    scalar_t* dst = dw.data_ptr<scalar_t>();
    std::vector<const scalar_t*> src;
    for (const auto& s : shares) src.push_back(s.data_ptr<scalar_t>());
    each_tap_block(dw, buckets, [&](size_t k, int64_t at, int64_t to) { dst[to] += src[k][at]; });
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Plan>(m, "Plan")
      .def(py::init<const std::vector<std::tuple<int64_t, int64_t, int64_t, Rows, Rows>>&>())
      .def("pad", &Plan::pad, py::call_guard<py::gil_scoped_release>())
      .def("fold", &Plan::fold, py::call_guard<py::gil_scoped_release>());
  py::class_<Slots>(m, "Slots")
      .def(py::init<const Rows&, std::vector<std::vector<int64_t>>, std::vector<int64_t>>())
      .def("gather", &Slots::gather, py::call_guard<py::gil_scoped_release>())
      .def("scatter_add_", &Slots::scatter_add_, py::call_guard<py::gil_scoped_release>());
  m.def("taps_of", &taps_of, py::call_guard<py::gil_scoped_release>());
  m.def("add_taps_", &add_taps_, py::call_guard<py::gil_scoped_release>());
}
