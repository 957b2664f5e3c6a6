"""JAX backend of diffconv (channels-last, Flax kernel layout ``(*k, in/groups, out)``).

:func:`conv` and :func:`lagrange_pad` are pure ``jax.numpy``/``lax`` (jit/grad/vmap safe);
the Flax layers live in :mod:`diffconv.jax.linen` and :mod:`diffconv.jax.nnx`.
"""

from .conv_transpose import conv_transpose
from .functional import conv, lagrange_pad

__all__ = ["conv", "conv_transpose", "lagrange_pad"]
