"""Shared fixtures of the parity tests; makes ``parity_run`` importable whatever pytest's import mode."""

import sys
from pathlib import Path

import jax
import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def x64():
    """float64 in JAX for this test only (restored afterwards, so it never leaks)."""
    with jax.enable_x64(True):
        yield
