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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Plan>(m, "Plan")
      .def(py::init<const std::vector<std::tuple<int64_t, int64_t, int64_t, Rows, Rows>>&>())
      .def("pad", &Plan::pad, py::call_guard<py::gil_scoped_release>())
      .def("fold", &Plan::fold, py::call_guard<py::gil_scoped_release>());
}
