"""The torch forms, each reached through its inputs alone, against independent truths.

Which form ran is read off the output's autograd node (``BandedConvBackward``,
``PaddedConvBackward``; the composite leaves plain operations' nodes), and the decision itself
through :func:`diffconv.torch.functional.choose_form`. Truths: the paper's transformed-kernel
form (:func:`diffconv.reference.reference_conv`), exact-fraction ghost padding written here,
``gradcheck``/``gradgradcheck`` in float64.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from diffconv.reference import reference_conv
from diffconv.torch import DiffConv2d
from diffconv.torch import functional as DF
from diffconv.torch._banded import BandedConv
from diffconv.torch._ghosts import Side, edges, extrapolate, fold
from diffconv.torch._padded import fill_padded, fold_ghosts
from diffconv.plan import axis_plan
from torch_truths import ghost_truth

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}


def form_ran(y: torch.Tensor) -> str:
    name = type(y.grad_fn).__name__
    return {"BandedConvBackward": "banded", "PaddedConvBackward": "padded"}.get(name, "composite")


def _tensors(shape, cout, ks, groups=1, *, bias=True, edge=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    x, w = mk(*shape), mk(cout, shape[1] // groups, *ks)
    b = mk(cout) if bias else None
    ew, eb = (mk(cout, shape[1] // groups, *ks), mk(cout)) if edge else (None, None)
    return x, w, b, ew, eb


def _reference(x, w, b, stride, dilation, groups, ew=None, eb=None):
    """The paper's transformed-kernel form on small maps; on large ones (where its dense
    per-axis operators are slow) exact-fraction ghost padding and a VALID convolution."""
    if max(x.shape[2:]) > 24:
        return ghost_truth(x, w, b, stride, dilation, groups, ew, eb)
    arr = lambda t: None if t is None else t.detach().numpy()  # noqa: E731
    return torch.from_numpy(reference_conv(arr(x), arr(w), arr(b), stride, dilation, groups, arr(ew), arr(eb)))


# nd-shape, kernel, stride, dilation, groups, channels in/out, the form the inputs select
FORM_CASES = [
    ((2, 4, 64, 70), (3, 3), 1, 1, 1, 4, "banded"),
    ((1, 4, 66, 64), (5, 5), 1, 1, 2, 4, "banded"),
    ((1, 2, 64, 64), (7, 7), 1, 1, 1, 2, "banded"),
    ((2, 2, 64, 64), (3, 3), 1, 1, 1, 4, "padded"),        # fewer input than output channels
    ((2, 4, 20, 18), (3, 3), 1, 1, 1, 4, "padded"),        # small map
    ((1, 2, 64, 64), (4, 4), 1, 1, 1, 2, "padded"),        # even kernel
    ((1, 2, 64, 64), (3, 3), 2, 1, 1, 2, "padded"),        # stride
    ((1, 2, 64, 64), (3, 3), 1, 2, 1, 2, "padded"),        # dilation
    ((2, 2, 19), (5,), 2, 1, 1, 3, "padded"),
    ((2, 4, 19), (5,), 1, 1, 2, 4, "banded"),             # 1-d: two bands
    ((1, 2, 9), (3,), 1, 1, 1, 3, "banded"),
    ((1, 2, 9), (4,), 1, 1, 1, 2, "padded"),
    ((1, 2, 6, 5, 7), (3, 2, 3), (1, 2, 2), (2, 1, 1), 1, 2, "padded"),
]


@pytest.mark.parametrize("shape,ks,stride,dilation,groups,cout,form", FORM_CASES)
def test_each_form_is_chosen_by_its_inputs_and_matches_the_reference(shape, ks, stride, dilation, groups, cout, form):
    nd = len(ks)
    x, w, b, _, _ = _tensors(shape, cout, ks, groups)
    st = (stride,) * nd if isinstance(stride, int) else stride
    dl = (dilation,) * nd if isinstance(dilation, int) else dilation
    geo = DF.geometry(shape[2:], ks, st, dl, False)
    assert DF.choose_form(x, w, geo) == form
    y = FUNCS[nd](x, w, b, stride, dilation, groups)
    assert form_ran(y) == form
    ref = _reference(x, w, b, st, dl, groups)
    assert (y.detach() - ref).abs().max() <= 1e-10 * ref.abs().max()


@pytest.mark.parametrize("edge,big", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("shape,ks,stride,dilation", [
    ((2, 4, 64, 66), (3, 3), 1, 1),                       # banded-sized map: the padded form takes it
    ((1, 2, 9, 7), (4, 3), (2, 1), (1, 2)),
    ((1, 2, 11), (5,), 1, 2),
    ((1, 2, 5, 4, 6), (3, 3, 2), 1, 1),
])
def test_edge_kernel_and_switch_run_the_padded_form(shape, ks, stride, dilation, edge, big):
    nd = len(ks)
    x, w, b, ew, eb = _tensors(shape, 3, ks, edge=edge)
    y = FUNCS[nd](x, w, b, stride, dilation, edge_weight=ew, edge_bias=eb, boundary_input_grad=big)
    assert form_ran(y) == "padded"
    st = (stride,) * nd if isinstance(stride, int) else stride
    dl = (dilation,) * nd if isinstance(dilation, int) else dilation
    ref = _reference(x, w, b, st, dl, 1, ew, eb)
    assert (y.detach() - ref).abs().max() <= 1e-10 * ref.abs().max()


GRAD_CASES = [
    ((1, 2, 64, 64), (3, 3), {}, "banded"),
    ((1, 2, 64, 64), (5, 5), {}, "banded"),
    ((1, 2, 9, 8), (3, 4), dict(stride=(2, 1), dilation=(1, 2)), "padded"),
    ((1, 2, 10), (5,), dict(dilation=2), "padded"),
    ((1, 2, 10), (5,), {}, "banded"),
    ((1, 1, 5, 4, 6), (3, 2, 3), {}, "padded"),
    ((1, 2, 8, 7), (3, 3), dict(edge=True), "padded"),
    ((1, 2, 9), (4,), dict(edge=True, stride=2), "padded"),
]


@pytest.mark.parametrize("shape,ks,opts,form", GRAD_CASES)
def test_gradients_of_each_form_by_gradcheck(shape, ks, opts, form):
    opts = dict(opts)
    edge = opts.pop("edge", False)
    nd = len(ks)
    x, w, b, ew, eb = _tensors(shape, 2, ks, edge=edge)
    inputs = tuple(t for t in (x, w, b, ew, eb) if t is not None)

    def f(*ts):
        x, w, b, *rest = ts
        ew, eb = rest if rest else (None, None)
        return FUNCS[nd](x, w, b, edge_weight=ew, edge_bias=eb, **opts)

    assert form_ran(f(*inputs)) == form
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


@pytest.mark.parametrize("shape,ks,form", [((1, 1, 64, 64), (3, 3), "banded"), ((1, 1, 7, 6), (3, 3), "padded"),
                                           ((1, 2, 8), (3,), "banded")])
def test_double_backward_of_each_form_by_gradgradcheck(shape, ks, form):
    x, w, b, _, _ = _tensors(shape, 1, ks)
    f = FUNCS[len(ks)]
    assert form_ran(f(x, w, b)) == form
    assert torch.autograd.gradgradcheck(lambda x, w: f(x, w), (x, w), fast_mode=True)


def test_the_boundary_switch_keeps_edge_gradients_off_by_gradcheck():
    """With the switch off, gradcheck holds with respect to the parameters (x held fixed)."""
    x, w, b, _, _ = _tensors((1, 2, 8, 7), 2, (3, 3))
    xd = x.detach()
    assert torch.autograd.gradcheck(lambda w, b: DF.conv2d(xd, w, b, boundary_input_grad=False), (w, b), fast_mode=True)


@pytest.mark.parametrize("shape,cout,form", [((2, 4, 64, 64), 4, "banded"), ((2, 4, 20, 18), 6, "padded")])
def test_forms_save_what_zero_padding_saves(shape, cout, form):
    """Besides parameters, autograd keeps only the input's storage (plus the forms' thin rims,
    which live on the Function's context, not as saved tensors)."""
    x = torch.randn(*shape, requires_grad=True)
    zero = nn.Conv2d(shape[1], cout, 3, padding="same")
    diff = DiffConv2d(shape[1], cout, 3)
    seen: set[int] = set()

    def pack(t):
        seen.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = diff(x)
    assert form_ran(y) == form
    params = {p.untyped_storage().data_ptr() for p in diff.parameters()}
    assert seen - params == {x.untyped_storage().data_ptr()}
    del zero


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("bands_first", [True, False])
def test_banded_form_in_either_order_matches_the_reference(k, bands_first):
    x, w, b, _, _ = _tensors((2, 4, 64, 67), 4, (k, k), groups=2)
    y = BandedConv.apply(x, w, b, 2, bands_first, None)
    ref = _reference(x, w, b, (1, 1), (1, 1), 2)
    assert (y.detach() - ref).abs().max() <= 1e-10 * ref.abs().max()
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), gy)
    want = torch.autograd.grad(DF.conv2d(x, w, b, groups=2), (x, w, b), gy)
    for a, e in zip(got, want):
        assert (a - e).abs().max() <= 1e-12 * k ** 4 * e.abs().max()


@pytest.mark.parametrize("shape,cout,form", [((2, 4, 64, 64), 4, "banded"), ((2, 4, 20, 18), 4, "padded")])
def test_channels_last_input(shape, cout, form):
    x, w, b, _, _ = _tensors(shape, cout, (3, 3))
    xc = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    y = DF.conv2d(xc, w, b)
    assert form_ran(y) == form
    ref = _reference(x, w, b, (1, 1), (1, 1), 1)
    assert (y.detach() - ref).abs().max() <= 1e-10 * ref.abs().max()
    (gx,) = torch.autograd.grad(y.square().sum(), xc)
    (gx_ref,) = torch.autograd.grad(DF.conv2d(x, w, b).square().sum(), x)
    assert torch.allclose(gx, gx_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,form", [((1, 2, 64, 64), "banded"), ((1, 2, 9, 10), "padded")])
def test_backward_twice_with_retain_graph(shape, form):
    x, w, b, _, _ = _tensors(shape, 2, (3, 3))
    y = DF.conv2d(x, w, b)
    assert form_ran(y) == form
    first = torch.autograd.grad(y.sum(), (x, w, b), retain_graph=True)
    second = torch.autograd.grad(y.sum(), (x, w, b))
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("shape,form", [((1, 2, 64, 64), "banded"), ((1, 2, 9, 10), "padded")])
@pytest.mark.parametrize("wanted", [0, 1])
def test_forms_give_the_one_gradient_asked_for(shape, form, wanted):
    x, w, b, _, _ = _tensors(shape, 2, (5, 5))
    (only,) = torch.autograd.grad(DF.conv2d(x, w, b).sum(), [(x, w)[wanted]])
    both = torch.autograd.grad(DF.conv2d(x, w, b).sum(), (x, w))
    assert torch.equal(only, both[wanted])


def test_autocast_bfloat16_boundary_close_to_float32():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    w = torch.randn(4, 3, 5, 5, generator=g) / 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x, w)
    assert y.dtype == torch.bfloat16
    truth = _reference(x.bfloat16().double(), w.bfloat16().double(), None, (1, 1), (1, 1), 1)
    # One bfloat16 rounding of the result (2**-8 relative), not a bfloat16 ghost matmul.
    assert (y.double() - truth).abs().max() <= 2 ** -7 * truth.abs().max()


# ------------------------------------------------------------------ the ghost builder, exactly


def _exact_pad_axis(u: list[Fraction], k: int, d: int, before: int, after: int) -> list[Fraction]:
    """Ghosts of one axis by exact Lagrange extrapolation on each ghost's lattice (DESIGN §2),
    written out here: the k (or all m < k) samples nearest the edge on the lattice."""
    L = len(u)

    def value(pos: int) -> Fraction:
        lattice = sorted((x for x in range(L) if (x - pos) % d == 0), key=lambda x: abs(x - pos))[:k]
        if not lattice:
            return u[0] if pos < 0 else u[-1]
        total = Fraction(0)
        for m in lattice:
            basis = Fraction(1)
            for n in lattice:
                if n != m:
                    basis *= Fraction(pos - n, m - n)
            total += basis * u[m]
        return total

    return [value(p) for p in range(-before, 0)] + list(u) + [value(L - 1 + q) for q in range(1, after + 1)]


@pytest.mark.parametrize("lengths,ks,dils", [((7, 8), (3, 5), (1, 1)), ((11, 9), (3, 3), (1, 2)),
                                             ((2, 5), (5, 4), (1, 1)), ((3, 4, 5), (3, 2, 3), (1, 1, 2))])
def test_fill_padded_equals_exact_extrapolation_and_fold_is_its_transpose(lengths, ks, dils):
    rng = np.random.default_rng(0)
    x = rng.integers(-9, 10, (1, 1) + lengths)
    plans = [axis_plan(L, k, d) for L, k, d in zip(lengths, ks, dils)]
    exact = np.array(x[0, 0], dtype=object) + Fraction(0)
    for a in reversed(range(len(lengths))):
        p = plans[a]
        exact = np.apply_along_axis(lambda u: np.array(_exact_pad_axis(list(u), p.kernel_size, p.dilation,
                                                                        p.before, p.after), dtype=object), a, exact)
    buf, _ = fill_padded(torch.from_numpy(x).double(), plans)
    assert np.array_equal(buf[0, 0].numpy(), exact.astype(np.float64))
    g = torch.randn(buf.shape, dtype=torch.float64)
    xt = torch.randn((1, 1) + lengths, dtype=torch.float64)
    lhs = (fill_padded(xt, plans)[0] * g).sum()
    rhs = (xt * fold_ghosts(g.clone(), plans)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("k,d,length", [(3, 1, 9), (5, 2, 12), (4, 1, 3), (2, 1, 1), (7, 3, 5)])
def test_extrapolate_and_fold_against_exact_fractions(k, d, length):
    p = axis_plan(length, k, d)
    side = Side.of(p)
    u = list(range(3, 3 + length))
    u = [v * v - 2 * v for v in u]
    exact = _exact_pad_axis([Fraction(v) for v in u], k, d, p.before, p.after)
    t = torch.tensor(u, dtype=torch.float64)[:, None]
    ghosts = extrapolate(edges(t, 0, side), side)[:, 0]
    want = exact[:p.before] + exact[p.before + length:]
    assert ghosts.tolist() == [float(v) for v in want]
    gg = torch.randn(p.before + p.after, 1, dtype=torch.float64)
    stacked = edges(t, 0, side)
    assert torch.allclose((extrapolate(stacked, side) * gg).sum(), (stacked * fold(gg, side)).sum(), rtol=1e-12)


def test_nan_on_one_edge_stays_off_the_other_edges_ghosts():
    """Sides with different ghost counts are extrapolated separately: no 0 * NaN crosses over."""
    x = torch.ones(1, 1, 12)
    x[0, 0, 0] = float("nan")
    y = DF.conv1d(x, torch.ones(1, 1, 4))
    assert torch.isnan(y[0, 0, :2]).all()
    assert torch.equal(y[0, 0, 2:], torch.full((10,), 4.0))
