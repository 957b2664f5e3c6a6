"""The drawn problems that both frameworks' property tests share (tests/torch/test_properties.py,
tests/jax/test_jax_properties.py): convolutions and transposed convolutions with boundary specs
and orders, their random arrays (channels-first, torch layouts) and their tolerances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import assume, settings
from hypothesis import strategies as st

import oracle
from tolerances import conv_tol, eps, scale_of


def examples(n: int) -> int:
    """``n`` examples under the default profiles, scaled up under ``thorough``."""
    return max(1, n * settings.default.max_examples // 100)


@dataclass
class Problem:
    lengths: tuple
    ks: tuple
    ds: tuple
    ss: tuple
    groups: int
    cin: int
    cout: int
    boundary: object        # as passed (a mode or per-axis entries)
    order: object
    seed: int

    @property
    def nd(self):
        return len(self.lengths)

    def kwargs(self, boundary=None) -> dict:
        return dict(boundary=self.boundary if boundary is None else boundary, order=self.order)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((2, self.cin, *self.lengths))
        w = rng.standard_normal((self.cout, self.cin // self.groups, *self.ks))
        b = rng.standard_normal(self.cout)
        return rng, x, w, b

    def tol(self, *arrays) -> float:
        """Per-output absolute tolerance: 8 * eps * ghost amplification * reduction * scale."""
        return 8 * conv_tol("float64", self.ks, self.cin // self.groups, order=self.order, dilation=self.ds,
                            scale=scale_of(*arrays))


def boundary_spec(draw, nd, modes=oracle.MODES):
    """A boundary spec as users write it: one mode, or per axis a mode or a ``(low, high)`` pair."""
    pairs = []
    for _ in range(nd):
        low = draw(st.sampled_from(modes))
        if low == "circular":
            pairs.append(("circular", "circular"))
        elif draw(st.booleans()):
            pairs.append((low, low))
        else:
            pairs.append((low, draw(st.sampled_from([m for m in modes if m != "circular"]))))
    if len(set(pairs)) == 1 and pairs[0][0] == pairs[0][1]:
        return pairs[0][0]                                   # one mode for every side
    return [p[0] if p[0] == p[1] else p for p in pairs]      # per axis: a mode or a (low, high) pair


@st.composite
def problems(draw, max_nd=2, max_len=9, max_k=5, modes=oracle.MODES, odd_extent=False, min_len=1,
             group_choices=(1, 2)):
    nd = draw(st.integers(1, max_nd))
    ints = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(nd))  # noqa: E731
    ks, ds, ss, lengths = ints(1, max_k), ints(1, 3), ints(1, 3), ints(min_len, max_len)
    if odd_extent:
        ks = tuple(k if (k - 1) * d % 2 == 0 else k + 1 for k, d in zip(ks, ds))
    groups = draw(st.sampled_from(group_choices))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    boundary = boundary_spec(draw, nd, modes)
    order = None
    if draw(st.booleans()):
        order = tuple(draw(st.integers(0, k - 1)) for k in ks)
    return Problem(lengths, ks, ds, ss, groups, cin, cout, boundary, order, draw(st.integers(0, 2 ** 32 - 1)))


def feasible(p: Problem) -> bool:
    """Whether the boundary fits the axes (reflect/circular need samples; the oracle decides)."""
    try:
        oracle.pad(np.zeros((1, 1, *p.lengths)), [oracle.same_widths(k, d) for k, d in zip(p.ks, p.ds)],
                   p.boundary, p.ks, p.ds, p.order)
        return True
    except ValueError:
        return False


@st.composite
def transposed(draw, max_nd=2):
    """A transposed convolution (torch's arguments) with a boundary spec and order, as a dict."""
    nd = draw(st.integers(1, max_nd))
    ints = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(nd))  # noqa: E731
    ks, ss, ds, lengths = ints(1, 5), ints(1, 3), ints(1, 3), ints(1, 6)
    pads = tuple(draw(st.integers(0, (k - 1) * d)) for k, d in zip(ks, ds))
    ops = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(ss, ds))
    outl = [(L - 1) * s - 2 * pp + d * (k - 1) + o + 1 for L, s, pp, d, k, o in zip(lengths, ss, pads, ds, ks, ops)]
    assume(all(n >= 1 for n in outl))
    groups = draw(st.sampled_from([1, 2]))
    boundary = boundary_spec(draw, nd)
    order = None
    if draw(st.booleans()):
        order = tuple(draw(st.integers(0, oracle.transpose_lattice(k, s, d)[0] - 1)) for k, s, d in zip(ks, ss, ds))
    return dict(nd=nd, ks=ks, ss=ss, ds=ds, lengths=lengths, pads=pads, ops=ops, groups=groups,
                boundary=boundary, order=order, seed=draw(st.integers(0, 2 ** 32 - 1)))


def t_arrays(q):
    """``(rng, x, w, b)`` of a drawn transposed convolution (weight ``(C, O/groups, *k)``)."""
    rng = np.random.default_rng(q["seed"])
    x = rng.standard_normal((2, 2 * q["groups"], *q["lengths"]))
    w = rng.standard_normal((2 * q["groups"], 2, *q["ks"]))
    return rng, x, w, rng.standard_normal(2 * q["groups"])


def t_tol(q, x, w) -> float:
    """Per-output absolute tolerance of a drawn transposed convolution."""
    amp = 1.0
    for (k, s, d), p in zip(zip(q["ks"], q["ss"], q["ds"]), q["order"] or (None,) * q["nd"]):
        m, dd = oracle.transpose_lattice(k, s, d)
        amp *= oracle.ghost_amplification(m, dd, p)
    return 8 * eps("float64") * amp * 2 * np.prod(q["ks"]) * scale_of(x, w)
