"""diffconv.jax.conv on a GPU (skipped without one): the layout that backend uses, against the truth."""

import jax
import numpy as np
import pytest

from diffconv.jax import conv, functional as F

from jaxtest_helpers import rel_err, truth_conv


def _gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


pytestmark = pytest.mark.skipif(_gpu() is None, reason="no GPU for JAX")


@pytest.mark.parametrize("lengths,k,stride", [((33, 20), 3, 1), ((17, 4), 5, 2), ((2, 1), 5, 1)])
def test_gpu_values_and_gradients_match_the_truth(x64, lengths, k, stride):
    gpu = _gpu()
    assert F.uses_extra_row(2) is (jax.default_backend() == "cpu")
    rng = np.random.default_rng(k)
    x = jax.device_put(rng.standard_normal((2, *lengths, 4)), gpu)
    w = jax.device_put(rng.standard_normal((k, k, 4, 6)), gpu)
    ct = rng.standard_normal((2, *(-(-n // stride) for n in lengths), 6))

    def loss(f):
        return lambda x, w: (f(x, w) * ct).sum()

    got = jax.jit(jax.value_and_grad(loss(lambda x, w: conv(x, w, strides=stride)), (0, 1)))(x, w)
    want = jax.value_and_grad(loss(lambda x, w: truth_conv(x, w, strides=stride)), (0, 1))(x, w)
    assert rel_err(got[0], want[0]) < 1e-12
    for a, b in zip(got[1], want[1]):
        assert rel_err(a, b) < 1e-12
