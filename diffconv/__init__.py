"""diffconv: padding-free size-keeping convolution for PyTorch and JAX/Flax.

The framework-neutral core lives here (:mod:`diffconv.coefficients`, :mod:`diffconv.plan`,
:mod:`diffconv.reference`); backends are :mod:`diffconv.torch` and :mod:`diffconv.jax`.
"""

from .boundary import boundary_from_well

__version__ = "0.1.0"
