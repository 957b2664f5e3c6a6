import jax
import pytest


@pytest.fixture
def x64():
    """float64 in JAX for this test only (restored afterwards, so it never leaks)."""
    with jax.enable_x64(True):
        yield
