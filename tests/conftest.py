"""Fixtures shared by the torch tests in several folders."""

import pytest


@pytest.fixture(params=["padded", "corrections", "banded"])
def plain_form(request, monkeypatch):
    """Run a test through each fast form of plain layers (the size normally picks one)."""
    from diffconv.torch import _autograd
    monkeypatch.setattr(_autograd, "_FORM", request.param)
    return request.param
