"""DiffConvTranspose (PyTorch) against an independent float64 truth.

Truth: extend the input along each axis by ghosts computed here with exact fractions (the
degree-(m-1) polynomial through the m samples nearest the edge on the ghost's lattice of step
d/gcd(s, d), docs/design.md; the ghost positions found by brute force over every (output, tap)
pair), run the plain ``F.conv_transposeNd`` on the extended input, crop to the output.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from math import gcd

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

import torch_truths
from diffconv.torch import DiffConvTranspose1d, DiffConvTranspose2d, DiffConvTranspose3d
from diffconv.torch.functional import conv_transpose1d, conv_transpose2d, conv_transpose3d

PLAIN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
OURS = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}


# ----------------------------------------------------------------------------------- the truth

def _reached(L: int, k: int, s: int, p: int, op: int, d: int) -> tuple[int, int, int]:
    """``(first input position, last input position, output length)`` any output sums over."""
    n = (L - 1) * s - 2 * p + d * (k - 1) + op + 1
    reached = {(o + p - j * d) // s for o in range(n) for j in range(k) if (o + p - j * d) % s == 0}
    return min(reached | {0}), max(reached | {L - 1}), n


def extension_matrix(L: int, k: int, s: int, p: int, op: int, d: int) -> tuple[torch.Tensor, int, int]:
    """``(E, before, out_len)``: ``E @ x`` is the axis extended by its ghosts (float64 of exact
    fractions): the ghosts of a kernel of ``m`` taps and dilation ``d/gcd(s, d)``, as in
    :func:`torch_truths.extension_matrix`, over the positions the brute-force search reaches."""
    first, last, n = _reached(L, k, s, p, op, d)
    E = torch_truths.extension_matrix(L, -(-k * gcd(s, d) // s), d // gcd(s, d), -first, last - (L - 1))
    return torch.tensor(E, dtype=torch.float64), -first, n


def truth(x, w, b, stride, padding, output_padding, groups, dilation):
    nd = w.dim() - 2
    s, p, op, d = ((v,) * nd if isinstance(v, int) else tuple(v) for v in (stride, padding, output_padding, dilation))
    xe, crops = x.double(), []
    for a in range(nd):
        E, before, n = extension_matrix(x.shape[2 + a], w.shape[2 + a], s[a], p[a], op[a], d[a])
        xe = torch.tensordot(xe, E, dims=([2 + a], [1])).movedim(-1, 2 + a)
        crops.append((p[a] + before * s[a], n))
    out = PLAIN[nd](xe, w.double(), None, s, 0, 0, groups, d)
    for a, (c, n) in enumerate(crops):
        if out.shape[2 + a] < c + n:         # outputs past the last tap receive nothing
            pad = [0, 0] * nd
            pad[2 * (nd - 1 - a) + 1] = c + n - out.shape[2 + a]
            out = F.pad(out, pad)
        out = out.narrow(2 + a, c, n)
    if b is not None:
        out = out + b.double().reshape((-1,) + (1,) * nd)
    return out


def _check_against_truth(nd, L, k, s, p, op, d, groups, *, grads=True, seed=0, form="padded"):
    """The call against the truth; ``form="composite"`` runs it inside a forward-mode AD level,
    where the layer takes its composite form (plain operations)."""
    # torch's own float64 backward of dilated transposed convolutions (the truth's) takes seconds;
    # dilated gradients are held to JAX's instead (tests/parity/test_transpose_parity.py)
    grads = grads and all(v == 1 for v in ((d,) * nd if isinstance(d, int) else d))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2 * groups, *L, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2 * groups, 3, *k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * groups, generator=g, dtype=torch.float64, requires_grad=True)
    with fwAD.dual_level() if form == "composite" else contextlib.nullcontext():
        got = OURS[nd](x, w, b, s, p, op, groups, d)
    per_axis = [(v,) * nd if isinstance(v, int) else tuple(v) for v in (s, p, op, d)]
    ghosts = any(first < 0 or last >= n for n, ki, *geo in zip(L, k, *per_axis)
                 for first, last, _ in [_reached(n, ki, *geo)])
    padded_ran = type(got.grad_fn).__name__ == "GhostConvBackward"
    assert not padded_ran if form == "composite" else padded_ran or not ghosts
    want = truth(x, w, b, s, p, op, groups, d)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    if grads:
        cot = torch.randn(got.shape, generator=g, dtype=torch.float64)
        for a, e in zip(torch.autograd.grad(got, (x, w, b), cot), torch.autograd.grad(want, (x, w, b), cot)):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def _valid(L, k, s, p, op, d):
    return all((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 >= 1 for n, ki, si, pi, oi, di in zip(L, k, s, p, op, d))


# ------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("form", ["padded", "composite"])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_1d_matches_truth(k, s, form):
    """Every padding 0-3, output_padding, dilation 1-2 and length 1-7 (short axes included), groups 1/2."""
    cases = 0
    for d, p, L in itertools.product((1, 2), range(4), (1, 2, 3, 7)):
        for op in range(max(s, d)):
            if _valid((L,), (k,), (s,), (p,), (op,), (d,)):
                _check_against_truth(1, (L,), (k,), s, p, op, d, groups=1 + (L + p) % 2,
                                     grads=p == 1 and d == 1, seed=cases, form=form)
                cases += 1
    assert cases > 15


def _sampled(nd: int, count: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        k = tuple(rng.randint(1, 5) for _ in range(nd))
        s = tuple(rng.randint(1, 3) for _ in range(nd))
        d = tuple(rng.randint(1, 2) for _ in range(nd))
        p = tuple(rng.randint(0, 2) for _ in range(nd))
        op = tuple(rng.randrange(max(a, b)) for a, b in zip(s, d))
        L = tuple(rng.randint(1, 6 if nd == 2 else 4) for _ in range(nd))
        if _valid(L, k, s, p, op, d):
            out.append((L, k, s, p, op, d, rng.choice((1, 2))))
    return out


@pytest.mark.parametrize("case", _sampled(2, 24, 1) + [((5, 6), (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1),
                                                       ((5, 4), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2)])
@pytest.mark.parametrize("form", ["padded", "composite"])
def test_2d_matches_truth(case, form):
    L, k, s, p, op, d, groups = case
    _check_against_truth(2, L, k, s, p, op, d, groups, form=form)


@pytest.mark.parametrize("case", _sampled(3, 8, 2))
@pytest.mark.parametrize("form", ["padded", "composite"])
def test_3d_matches_truth(case, form):
    L, k, s, p, op, d, groups = case
    _check_against_truth(3, L, k, s, p, op, d, groups, form=form)


@pytest.mark.parametrize("k, s, p, op, d", [(4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (5, 1, 2, 0, 1), (3, 1, 1, 0, 2),
                                            (6, 3, 2, 0, 1), (4, 2, 0, 1, 2), (5, 2, 3, 1, 1)])
def test_polynomials_are_exact(k, s, p, op, d):
    """On samples of a polynomial of degree < m per axis the output is the plain transposed
    convolution of that polynomial sampled on the extended grid, cropped (no ghost formula used)."""
    m = -(-k * gcd(s, d) // s)
    L = (7, 6)
    g = torch.Generator().manual_seed(k * 10 + s)
    coef = torch.randn(2, 3, m, generator=g, dtype=torch.float64)        # (axis, channel, power)
    w = torch.randn(3, 2, k, k, generator=g, dtype=torch.float64)
    spans = [_reached(n, k, s, p, op, d) for n in L]

    def sample(axis, positions):
        t = torch.tensor(positions, dtype=torch.float64) / 4
        return (coef[axis][:, :, None] * t ** torch.arange(m, dtype=torch.float64)[None, :, None]).sum(1)

    def field(pos0, pos1):                                                # separable product per channel
        return (sample(0, pos0)[:, :, None] * sample(1, pos1)[:, None, :])[None]

    x = field(range(L[0]), range(L[1]))
    ext = field(range(spans[0][0], spans[0][1] + 1), range(spans[1][0], spans[1][1] + 1))
    want = F.conv_transpose2d(ext, w, None, s, 0, 0, 1, d)
    for a, (first, _, n) in enumerate(spans):
        c = p - first * s
        if want.shape[2 + a] < c + n:
            pad = [0, 0, 0, 0]
            pad[2 * (1 - a) + 1] = c + n - want.shape[2 + a]
            want = F.pad(want, pad)
        want = want.narrow(2 + a, c, n)
    torch.testing.assert_close(conv_transpose2d(x, w, None, s, p, op, 1, d), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k, groups", [(2, 1), (3, 3), (1, 1)])
def test_plain_where_no_output_reaches_past_the_data(nd, k, groups):
    """k = s, padding 0: every output's taps land on data, so the result is F.conv_transposeNd's, bit for bit."""
    g = torch.Generator().manual_seed(nd * 7 + k)
    x = torch.randn(2, 3 * groups, *(5,) * nd, generator=g)
    w = torch.randn(3 * groups, 2, *(k,) * nd, generator=g)
    b = torch.randn(2 * groups, generator=g)
    assert torch.equal(OURS[nd](x, w, b, k, 0, 0, groups), PLAIN[nd](x, w, b, k, 0, 0, groups))


def test_short_axes_follow_the_lower_degree_rule():
    """An axis of 2 samples with k=5, s=1 (m=5): ghosts come from the line through both samples,
    so a linear ramp is continued exactly, and one sample gives constant ghosts."""
    w = torch.randn(1, 1, 5, dtype=torch.float64)
    ramp = torch.tensor([[[1.0, 3.0]]], dtype=torch.float64)
    ext = torch.tensor([[[-3.0, -1.0, 1.0, 3.0, 5.0, 7.0]]], dtype=torch.float64)   # positions -2..3
    want = F.conv_transpose1d(ext, w, None, 1, 0).narrow(2, 2 + 2, 2)
    torch.testing.assert_close(conv_transpose1d(ramp, w, None, 1, 2), want)
    one = torch.tensor([[[2.0]]], dtype=torch.float64)
    constant = 2.0 * w.sum() * torch.ones(1, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(conv_transpose1d(one, w, None, 1, 2), constant)


def test_gradcheck_and_forward_ad_float64():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: conv_transpose2d(x, w, b, (2, 1), (1, 0), (1, 0), 2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), check_forward_ad=True, fast_mode=True)
    x1 = torch.randn(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(2, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: conv_transpose1d(x, w, None, 3, 1, 2), (x1, w1), check_forward_ad=True,
                                    fast_mode=True)
    x3 = torch.randn(1, 1, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w3 = torch.randn(1, 2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: conv_transpose3d(x, w, None, 2, 1, 1), (x3, w3), fast_mode=True)


def test_torch_func_transforms():
    import torch.func as tf

    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    fn = lambda xi: conv_transpose2d(xi, w, None, 2, 1)  # noqa: E731
    torch.testing.assert_close(tf.vmap(fn)(x.unsqueeze(1)).squeeze(1), fn(x))
    x1 = x[:1, :, 0]
    w1 = w[:, :, 0]
    jr = tf.jacrev(lambda t: conv_transpose1d(t, w1, None, 2, 1))(x1)
    jf = tf.jacfwd(lambda t: conv_transpose1d(t, w1, None, 2, 1))(x1)
    torch.testing.assert_close(jr, jf)
    gw = tf.grad(lambda ww: conv_transpose2d(x, ww, None, 2, 1).square().sum())(w)
    w_ = w.clone().requires_grad_()
    conv_transpose2d(x, w_, None, 2, 1).square().sum().backward()
    torch.testing.assert_close(gw, w_.grad)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_trace_and_export_keep_the_result():
    torch.manual_seed(0)
    m = DiffConvTranspose2d(3, 4, 4, 2, 1).eval()
    x, x2 = torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x,))
    torch.testing.assert_close(traced(x2), m(x2))
    exported = torch.export.export(m, (x,))
    torch.testing.assert_close(exported.module()(x2), m(x2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_keeps_dtype_and_value(dtype):
    """Against float64 on the same rounded operands: within a few units in the last place of
    the output's dtype, scaled by the sum's size (ghosts in float32, the output rounded once)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 6, 6, generator=g).to(dtype)
    w = (torch.randn(4, 3, 4, 4, generator=g) / 4).to(dtype)
    got = conv_transpose2d(x, w, None, 2, 1)
    assert got.dtype == dtype
    want = conv_transpose2d(x.double(), w.double(), None, 2, 1)
    # m = 2 ghost nodes per axis: a ghost is 2u0 - u1 (l2 norm 2.2 per axis, 5 for a corner).
    scale = x.double().abs().amax() * w.double().abs().sum((0, 2, 3)).amax()
    bound = 4 * torch.finfo(dtype).eps * (want.abs() + 5 * scale)
    assert ((got.double() - want).abs() <= bound).all()


# ------------------------------------------------------------------------------------ modules

@pytest.mark.parametrize("plain_cls, cls, nd", [(nn.ConvTranspose1d, DiffConvTranspose1d, 1),
                                                (nn.ConvTranspose2d, DiffConvTranspose2d, 2),
                                                (nn.ConvTranspose3d, DiffConvTranspose3d, 3)])
def test_module_loads_plain_state_dict_and_matches_functional(plain_cls, cls, nd):
    torch.manual_seed(0)
    plain = plain_cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1).double()
    ours = cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2).double()
    assert isinstance(ours, plain_cls)
    ours.load_state_dict(plain.state_dict(), strict=True)
    assert set(ours.state_dict()) == set(plain.state_dict())
    x = torch.randn(2, 4, *(3,) * nd, dtype=torch.float64)
    y = ours(x)
    assert y.shape == plain(x).shape
    torch.testing.assert_close(y, truth(x, ours.weight, ours.bias, 2, 1, 1, 2, 1))
    torch.testing.assert_close(ours(x[0]), y[0])                   # unbatched input


def test_module_output_size_picks_output_padding_like_torch():
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1).double()
    ours = DiffConvTranspose2d(2, 3, 3, stride=2, padding=1).double()
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    for size in ([7, 9], [8, 10], [1, 2, 8, 9]):
        y = ours(x, output_size=size)
        assert y.shape == plain(x, output_size=size).shape
        op = [n - (m - 1) * 2 + 2 - 3 + 1 - 1 for n, m in zip(size[-2:], (4, 5))]
        torch.testing.assert_close(y, truth(x, ours.weight, ours.bias, 2, 1, op, 1, 1))
    with pytest.raises(ValueError, match="output size"):
        ours(x, output_size=[20, 20])


def test_module_has_no_padding_mode_argument():
    with pytest.raises(TypeError):
        DiffConvTranspose2d(2, 2, 3, padding_mode="zeros")  # type: ignore[call-arg]
    assert "DiffConvTranspose2d(2, 3, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))" == repr(
        DiffConvTranspose2d(2, 3, 4, 2, 1))


# --------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("call, error, match", [
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3, dtype=torch.int64), torch.ones(2, 2, 3, 3)), TypeError,
     r"input must have a floating dtype \(float16, bfloat16, float32, float64\), got int64"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3, dtype=torch.float64)), TypeError,
     r"weight dtype float64 does not match input dtype float32"),
    (lambda: conv_transpose2d(torch.ones(2, 3), torch.ones(2, 2, 3, 3)), ValueError,
     r"input must have rank 3 or 4 for a 2-d convolution, got rank 2"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3)), ValueError,
     r"weight must have rank 4 for a 2-d convolution, got shape \(2, 2, 3\)"),
    (lambda: conv_transpose2d(torch.ones(1, 3, 3, 3), torch.ones(2, 2, 3, 3)), ValueError,
     r"weight has 2 input channels, but input has 3 channels"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), torch.ones(3)), ValueError,
     r"bias must have shape \(2,\), got \(3,\)"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), groups=0), ValueError,
     r"groups must be an int >= 1, got 0"),
    (lambda: conv_transpose2d(torch.ones(1, 3, 3, 3), torch.ones(3, 2, 3, 3), groups=2), ValueError,
     r"input channels \(3\) must be divisible by groups \(2\)"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), stride=2, output_padding=2),
     ValueError, r"output_padding must be smaller than stride or dilation on each axis, got output_padding=\(2, 2\)"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), padding=-1), ValueError,
     r"padding must be >= 0, got -1"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), stride=(1, 0)), ValueError,
     r"stride must be >= 1, got \(1, 0\)"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), dilation=1.5), TypeError,
     r"dilation must be an int or a sequence of 2 ints, got 1.5"),
    (lambda: conv_transpose2d(torch.ones(1, 2, 1, 1), torch.ones(2, 2, 1, 1), padding=1), ValueError,
     r"the transposed convolution's output would have length -1 on an axis of 1 samples"),
    (lambda: conv_transpose2d([[1.0]], torch.ones(2, 2, 3, 3)), TypeError, r"input must be a torch.Tensor, got list"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_eager_calls_run_the_padded_form_and_second_derivatives_hold(nd):
    """Eager autograd runs the padded form (one node); differentiating its backward again goes
    through the composite form, and gradgradcheck holds against finite differences."""
    g = torch.Generator().manual_seed(nd)
    x = torch.randn(1, 2, *(4,) * nd, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, *(3,) * nd, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    f = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}[nd]
    assert type(f(x, w, b, 2, 1, 1).grad_fn).__name__ == "GhostConvBackward"
    assert torch.autograd.gradgradcheck(lambda *t: f(*t, 2, 1, 1), (x, w, b))
