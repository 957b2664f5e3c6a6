"""Make the shared truths (``torch_truths``) importable whatever pytest's import mode, and run
each fast test on both ghost paddings of the eager layer (:func:`ghost_kernels`)."""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)



# Every fast test here runs twice: on the C++ ghost kernels (the eager CPU layer's default) and on
# the PyTorch operations that replace them on other devices, where the build fails, and under
# ``DIFFCONV_NATIVE=0``. A module that sets ``BOTH_PADDINGS = False`` runs once.
GHOST_KERNELS = ("native", "torch-ops")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("slow") is None and getattr(metafunc.module, "BOTH_PADDINGS", True):
        metafunc.fixturenames.append("ghost_kernels")
        metafunc.parametrize("ghost_kernels", GHOST_KERNELS, indirect=True)


@pytest.fixture
def ghost_kernels(request):
    """Which ghost padding the eager layer uses in this test (``"native"`` or ``"torch-ops"``)."""
    from diffconv.torch import _native

    if request.param == "native":
        yield request.param
    else:
        with _native.disabled():
            yield request.param
