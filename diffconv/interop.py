"""Moving convolution weights between PyTorch and Flax layouts.

PyTorch (``nn.ConvNd`` / :class:`diffconv.torch.DiffConv2d` etc.) keeps ``weight`` as
``(out, in/groups, *k)``; Flax (``nn.Conv`` / :class:`diffconv.jax.linen.DiffConv` /
:class:`diffconv.jax.nnx.DiffConv`) keeps ``kernel`` as ``(*k, in/groups, out)``. Names map
``weight <-> kernel``, ``bias <-> bias``, ``edge_weight <-> edge_kernel``, ``edge_bias <-> edge_bias``.
Values may be torch tensors, NumPy or JAX arrays; torch and jax are imported only when needed.

Transposed convolutions: torch (``nn.ConvTransposeNd`` / :class:`diffconv.torch.DiffConvTranspose2d`)
keeps ``weight`` as ``(in, out/groups, *k)``; :func:`diffconv.jax.conv_transpose` takes
``(*k, in, out/groups)`` (:func:`torch_transpose_weight_to_jax`); the Flax layers
(``ConvTranspose`` / ``DiffConvTranspose``, no groups) hold ``(*k, in, out)`` applied without a
flip, i.e. the torch weight flipped along every spatial axis, or with ``transpose_kernel=True``
``(*k, out, in)`` unflipped (:func:`torch_transpose_to_flax_params`). The Flax layer computes what
the torch layer computes with explicit padding :func:`torch_transpose_padding_to_flax`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = [
    "flax_to_torch_state_dict",
    "load_torch_into_nnx",
    "nnx_to_torch_state_dict",
    "torch_kernel_to_flax",
    "flax_kernel_to_torch",
    "torch_to_flax_params",
    "torch_transpose_weight_to_jax",
    "jax_transpose_kernel_to_torch",
    "torch_transpose_to_flax_params",
    "flax_transpose_to_torch_state_dict",
    "torch_transpose_padding_to_flax",
]

_TORCH_TO_FLAX = {"weight": "kernel", "bias": "bias", "edge_weight": "edge_kernel", "edge_bias": "edge_bias"}
_FLAX_TO_TORCH = {v: k for k, v in _TORCH_TO_FLAX.items()}


def _to_numpy(value: Any, name: str) -> np.ndarray:
    """A torch tensor (any dtype, also bfloat16), NumPy or JAX array as a NumPy array (no copy where possible)."""
    if type(value).__module__.startswith("torch"):
        import torch

        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{name} must be a torch tensor, NumPy or JAX array, got {type(value).__name__}")
    return np.asarray(value)


def torch_kernel_to_flax(weight: Any) -> np.ndarray:
    """``(out, in/groups, *k)`` -> ``(*k, in/groups, out)``."""
    w = _to_numpy(weight, "weight")
    if not 3 <= w.ndim <= 5:
        raise ValueError(f"weight must have rank 3-5 ((out, in/groups, *k)), got shape {w.shape}")
    return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


def flax_kernel_to_torch(kernel: Any) -> np.ndarray:
    """``(*k, in/groups, out)`` -> ``(out, in/groups, *k)``."""
    k = _to_numpy(kernel, "kernel")
    if not 3 <= k.ndim <= 5:
        raise ValueError(f"kernel must have rank 3-5 ((*k, in/groups, out)), got shape {k.shape}")
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def _unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of parameter names to arrays, got {type(params).__name__}")
    if set(params) == {"params"}:
        params = params["params"]
    return params


def torch_to_flax_params(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """One conv layer's torch state dict (keys ``prefix + weight|bias|edge_weight|edge_bias``)
    as a Flax linen param dict ``{'kernel', 'bias', 'edge_kernel', 'edge_bias'}`` of NumPy arrays.
    Use as ``layer.apply({'params': torch_to_flax_params(sd)}, x)``."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    if prefix + "weight" not in state_dict:
        raise ValueError(f"state_dict has no {prefix + 'weight'!r}; keys: {sorted(state_dict)}")
    out = {}
    for tname, fname in _TORCH_TO_FLAX.items():
        value = state_dict.get(prefix + tname)
        if value is None:
            continue
        out[fname] = torch_kernel_to_flax(value) if tname.endswith("weight") else _to_numpy(value, prefix + tname)
    return out


def flax_to_torch_state_dict(params: Mapping[str, Any]) -> dict[str, Any]:
    """A Flax conv layer's params (``{'kernel', ...}`` or ``{'params': {...}}``) as a torch state
    dict ``{'weight', 'bias', 'edge_weight', 'edge_bias'}`` of tensors, for ``load_state_dict``."""
    import torch

    params = _unwrap(params)
    if "kernel" not in params:
        raise ValueError(f"params has no 'kernel'; keys: {sorted(params)}")
    out = {}
    for fname, tname in _FLAX_TO_TORCH.items():
        value = params.get(fname)
        if value is None:
            continue
        arr = flax_kernel_to_torch(value) if fname.endswith("kernel") else _to_numpy(value, fname)
        out[tname] = _numpy_to_torch(np.ascontiguousarray(arr))
    return out


def _numpy_to_torch(arr: np.ndarray) -> Any:
    import torch

    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def load_torch_into_nnx(module: Any, state_dict: Mapping[str, Any], prefix: str = "") -> None:
    """Assign a torch conv layer's weights to an NNX conv layer (``DiffConv`` or ``nnx.Conv``) in place.

    Shapes must match; the values keep the torch dtype. ``edge_weight``/``edge_bias`` need
    ``module.edge_kernel``/``edge_bias`` params (a ``DiffConv`` built with ``edge_kernel=True``).
    A transposed layer (``nnx.ConvTranspose`` / ``DiffConvTranspose``, recognised by its
    ``transpose_kernel`` attribute) takes a ``ConvTransposeNd`` state dict
    (:func:`torch_transpose_to_flax_params`).
    """
    import jax.numpy as jnp

    if hasattr(module, "transpose_kernel"):
        params = torch_transpose_to_flax_params(state_dict, prefix, transpose_kernel=bool(module.transpose_kernel))
    else:
        params = torch_to_flax_params(state_dict, prefix)
    for name, value in params.items():
        target = getattr(module, name, None)
        if target is None:
            raise ValueError(
                f"{type(module).__name__} has no {name!r} parameter for {prefix + _FLAX_TO_TORCH[name]!r} "
                f"(build it with edge_kernel=True / use_bias=True)"
            )
        if tuple(target.shape) != value.shape:
            raise ValueError(
                f"{prefix + _FLAX_TO_TORCH[name]} has shape {value.shape} in Flax layout, but "
                f"{type(module).__name__}.{name} has shape {tuple(target.shape)}"
            )
        target[...] = jnp.asarray(value)


def nnx_to_torch_state_dict(module: Any) -> dict[str, Any]:
    """An NNX conv layer's ``kernel``/``bias`` (and ``edge_kernel``/``edge_bias``) as a torch state dict
    (a ``ConvTransposeNd`` one for a transposed layer)."""
    params = {}
    for name in _FLAX_TO_TORCH:
        p = getattr(module, name, None)
        if p is not None and hasattr(p, "shape"):
            params[name] = np.asarray(p[...])
    if hasattr(module, "transpose_kernel"):
        return flax_transpose_to_torch_state_dict(params, transpose_kernel=bool(module.transpose_kernel))
    return flax_to_torch_state_dict(params)


def torch_transpose_weight_to_jax(weight: Any) -> np.ndarray:
    """A ``ConvTransposeNd`` weight ``(in, out/groups, *k)`` as :func:`diffconv.jax.conv_transpose`'s
    kernel ``(*k, in, out/groups)``."""
    w = _to_numpy(weight, "weight")
    if not 3 <= w.ndim <= 5:
        raise ValueError(f"weight must have rank 3-5 ((in, out/groups, *k)), got shape {w.shape}")
    return np.transpose(w, tuple(range(2, w.ndim)) + (0, 1))


def jax_transpose_kernel_to_torch(kernel: Any) -> np.ndarray:
    """:func:`diffconv.jax.conv_transpose`'s kernel ``(*k, in, out/groups)`` as a ``ConvTransposeNd``
    weight ``(in, out/groups, *k)``."""
    k = _to_numpy(kernel, "kernel")
    if not 3 <= k.ndim <= 5:
        raise ValueError(f"kernel must have rank 3-5 ((*k, in, out/groups)), got shape {k.shape}")
    return np.transpose(k, (k.ndim - 2, k.ndim - 1) + tuple(range(k.ndim - 2)))


def _flax_transpose_kernel(weight: np.ndarray, transpose_kernel: bool) -> np.ndarray:
    nd = weight.ndim - 2
    if transpose_kernel:                                  # (*k, out, in), applied flipped by lax
        return np.transpose(weight, tuple(range(2, weight.ndim)) + (1, 0))
    k = np.transpose(weight, tuple(range(2, weight.ndim)) + (0, 1))
    return np.ascontiguousarray(np.flip(k, axis=tuple(range(nd))))


def torch_transpose_to_flax_params(
    state_dict: Mapping[str, Any], prefix: str = "", *, transpose_kernel: bool = False
) -> dict[str, np.ndarray]:
    """One ``ConvTransposeNd`` layer's state dict (``groups=1``) as the params ``{'kernel', 'bias'}``
    of a Flax ``ConvTranspose`` / ``DiffConvTranspose`` built with the same ``transpose_kernel``."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    if prefix + "weight" not in state_dict:
        raise ValueError(f"state_dict has no {prefix + 'weight'!r}; keys: {sorted(state_dict)}")
    w = _to_numpy(state_dict[prefix + "weight"], prefix + "weight")
    if not 3 <= w.ndim <= 5:
        raise ValueError(f"{prefix}weight must have rank 3-5 ((in, out, *k)), got shape {w.shape}")
    out = {"kernel": _flax_transpose_kernel(w, transpose_kernel)}
    if state_dict.get(prefix + "bias") is not None:
        out["bias"] = _to_numpy(state_dict[prefix + "bias"], prefix + "bias")
    return out


def flax_transpose_to_torch_state_dict(params: Mapping[str, Any], *, transpose_kernel: bool = False) -> dict[str, Any]:
    """A Flax ``ConvTranspose`` / ``DiffConvTranspose`` layer's params as a ``ConvTransposeNd`` state dict."""
    params = _unwrap(params)
    if "kernel" not in params:
        raise ValueError(f"params has no 'kernel'; keys: {sorted(params)}")
    k = _to_numpy(params["kernel"], "kernel")
    if not 3 <= k.ndim <= 5:
        raise ValueError(f"kernel must have rank 3-5, got shape {k.shape}")
    nd = k.ndim - 2
    if transpose_kernel:                                  # (*k, out, in) -> (in, out, *k)
        w = np.transpose(k, (nd + 1, nd) + tuple(range(nd)))
    else:                                                 # (*k, in, out), unflipped -> flip
        w = np.transpose(np.flip(k, axis=tuple(range(nd))), (nd, nd + 1) + tuple(range(nd)))
    out = {"weight": _numpy_to_torch(np.ascontiguousarray(w))}
    if params.get("bias") is not None:
        out["bias"] = _numpy_to_torch(np.ascontiguousarray(_to_numpy(params["bias"], "bias")))
    return out


def torch_transpose_padding_to_flax(
    kernel_size: Any, padding: Any = 0, output_padding: Any = 0, dilation: Any = 1
) -> list[tuple[int, int]]:
    """Explicit Flax ``ConvTranspose`` padding for torch's ``padding``/``output_padding``:
    ``((k-1)d - p, (k-1)d - p + output_padding)`` per axis."""
    from ._checks import as_tuple

    n = len(kernel_size) if not isinstance(kernel_size, int) else 1
    ks = as_tuple("kernel_size", kernel_size, n)
    p = as_tuple("padding", padding, n, minimum=0)
    op = as_tuple("output_padding", output_padding, n, minimum=0)
    d = as_tuple("dilation", dilation, n)
    return [((k - 1) * di - pi, (k - 1) * di - pi + o) for k, pi, o, di in zip(ks, p, op, d)]
