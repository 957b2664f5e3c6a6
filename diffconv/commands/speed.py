"""``diffconv speed``: time, peak memory and compile time of DiffConv vs zero ``'same'`` padding.

For each framework, model (the :data:`MODELS` registry: ``stack``, ``unet``, ``gelu``,
``resnet``, ``decoder``; :func:`register` adds one) and kernel size, the two variants run alternately on
identical weights and data; the report gives medians and the ratios DiffConv / zero padding.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the profiler's allocation
and free events of one training step, accumulated in time order (peak of live bytes allocated
during the step; parameters and inputs allocated before it are not counted). JAX: the
compiled train step's ``memory_analysis()`` (temporaries + arguments + outputs).

Compile time: JAX: lowering and compiling the jitted train step (the fastest of
``--compile-repeats``, caches cleared before each); torch: the first step, which under
``--torch-compile`` includes the compilation and in eager mode only torch's first-call work
(no compilation).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

RESULT_KEYS = (
    "framework", "model", "kernel_size", "device", "dtype", "batch", "size", "channels", "repeats",
    "time_zero_s", "time_diff_s", "time_ratio", "time_ratio_paired", "time_ratio_q1", "time_ratio_q3",
    "memory_zero_bytes", "memory_diff_bytes", "memory_ratio",
    "memory_method", "compile_zero_s", "compile_diff_s", "compile_method",
)


@dataclass
class Result:
    """One row of the report; times are medians over ``repeats`` steps.

    ``time_ratio``: ratio of the two medians; ``time_ratio_paired``: median of the per-round
    ratios (each DiffConv step over the zero-padded step run next to it), with its quartiles
    ``time_ratio_q1``/``time_ratio_q3`` as a measure of the machine's noise. ``compile_*_s``:
    what ``compile_method`` says (JAX: the train step's lowering and compilation; torch: its
    first step, compilation included under ``--torch-compile``)."""

    framework: str
    model: str
    kernel_size: int
    device: str
    dtype: str
    batch: int
    size: int
    channels: int
    repeats: int
    time_zero_s: float
    time_diff_s: float
    time_ratio: float
    time_ratio_paired: float
    time_ratio_q1: float
    time_ratio_q3: float
    memory_zero_bytes: int
    memory_diff_bytes: int
    memory_ratio: float
    memory_method: str
    time_zero_all_s: list[float] = field(default_factory=list)
    time_diff_all_s: list[float] = field(default_factory=list)
    compile_zero_s: float | None = None
    compile_diff_s: float | None = None
    compile_method: str = ""


# ------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class BenchModel:
    """A model ``diffconv speed`` times, in both frameworks.

    ``torch(variant, channels, k)`` and ``jax(variant, channels, k, dtype)`` build it with zero
    padding (``variant='zero'``) or its DiffConv twin (``'diff'``); the two torch variants share
    state-dict keys, the two Flax variants one parameter tree. ``in_channels(channels)``: the
    input's features (the target has the output's shape); ``batch``: default batch size;
    ``adam``: the step includes an Adam update (else gradients only); ``size_multiple``: the
    image side must be a multiple of it; ``input_divisor``: the input's side is the image side
    divided by it (an upsampling model's output has the image side).
    """

    name: str
    torch: Callable[[str, int, int], Any]
    jax: Callable[[str, int, int, Any], Any]
    in_channels: Callable[[int], int]
    batch: int = 4
    adam: bool = True
    size_multiple: int = 1
    input_divisor: int = 1


MODELS: dict[str, BenchModel] = {}


def _input_side(model: BenchModel, size: int) -> int:
    """The side of ``model``'s input for image side ``size``."""
    return size // model.input_divisor


def register(model: BenchModel) -> BenchModel:
    """Add ``model`` to :data:`MODELS` (and to ``--models``' choices)."""
    MODELS[model.name] = model
    return model


def _torch_conv(variant: str) -> Callable[..., Any]:
    """``conv(cin, cout, k, stride=1)``: ``nn.Conv2d`` with zero padding, or ``DiffConv2d``."""
    from torch import nn

    from diffconv.torch import DiffConv2d

    def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
        if variant == "diff":
            return DiffConv2d(cin, cout, k, stride)
        return nn.Conv2d(cin, cout, k, stride, padding="same" if stride == 1 else k // 2)

    return conv


@functools.lru_cache(maxsize=None)
def _torch_nets() -> Any:
    """The torch benchmark models (defined on first use: torch is imported only when timed)."""
    import torch
    from torch import nn

    F = nn.functional

    class Stack(nn.Module):
        """Four ``conv(k)`` layers of constant width, ReLU between; input ``(N, C, S, S)``."""

        def __init__(self, conv: Callable[..., nn.Module], channels: int, k: int) -> None:
            super().__init__()
            self.convs = nn.ModuleList(conv(channels, channels, k) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for i, c in enumerate(self.convs):
                x = c(x) if i == len(self.convs) - 1 else torch.relu(c(x))
            return x

    class UNet(nn.Module):
        """3->3 UNet, three levels (features f, 2f, 4f), two tanh convs per block, max-pool down,
        transposed-conv up, skip concatenation, 1x1 output head. Input ``(N, 3, S, S)``, S % 4 == 0."""

        def __init__(self, conv: Callable[..., nn.Module], f: int, k: int) -> None:
            super().__init__()

            def block(cin: int, cout: int) -> nn.Module:
                return nn.Sequential(conv(cin, cout, k), nn.Tanh(), conv(cout, cout, k), nn.Tanh())

            self.enc0, self.enc1, self.mid = block(3, f), block(f, 2 * f), block(2 * f, 4 * f)
            self.up1, self.dec1 = nn.ConvTranspose2d(4 * f, 2 * f, 2, stride=2), block(4 * f, 2 * f)
            self.up0, self.dec0 = nn.ConvTranspose2d(2 * f, f, 2, stride=2), block(2 * f, f)
            self.head = nn.Conv2d(f, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e0 = self.enc0(x)
            e1 = self.enc1(F.max_pool2d(e0, 2))
            m = self.mid(F.max_pool2d(e1, 2))
            d1 = self.dec1(torch.cat([self.up1(m), e1], 1))
            d0 = self.dec0(torch.cat([self.up0(d1), e0], 1))
            return self.head(d0)

    class Gelu(nn.Module):
        """3 -> c -> 2c -> 2c -> c -> 3, GELU between: five size-keeping convs of changing width."""

        def __init__(self, conv: Callable[..., nn.Module], c: int, k: int) -> None:
            super().__init__()
            widths = [3, c, 2 * c, 2 * c, c, 3]
            self.convs = nn.ModuleList(conv(a, b, k) for a, b in zip(widths[:-1], widths[1:]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for i, c in enumerate(self.convs):
                x = c(x) if i == len(self.convs) - 1 else F.gelu(c(x))
            return x

    class ResNet(nn.Module):
        """Stem conv, then three stages of one residual block (two convs, SiLU, identity skip),
        the stages joined by stride-2 DiffConv/zero-padded convs (c -> 2c -> 4c), a 1x1 head to 3
        features. ``(N, 3, S, S) -> (N, 3, S/4, S/4)``."""

        def __init__(self, conv: Callable[..., nn.Module], c: int, k: int) -> None:
            super().__init__()
            widths = [c, 2 * c, 4 * c]
            self.stem = conv(3, c, k)
            self.blocks = nn.ModuleList(nn.ModuleList([conv(w, w, k), conv(w, w, k)]) for w in widths)
            self.downs = nn.ModuleList(conv(a, b, k, 2) for a, b in zip(widths[:-1], widths[1:]))
            self.head = nn.Conv2d(4 * c, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.silu(self.stem(x))
            for i, (c1, c2) in enumerate(self.blocks):
                x = F.silu(x + c2(F.silu(c1(x))))
                if i < len(self.downs):
                    x = F.silu(self.downs[i](x))
            return self.head(x)

    return argparse.Namespace(Stack=Stack, UNet=UNet, Gelu=Gelu, ResNet=ResNet)


def _jax_conv(variant: str, dtype: Any) -> Callable[..., Any]:
    """``conv(features, k, strides=1, name=...)``: ``nn.Conv(padding='SAME')``, or ``DiffConv``."""
    import flax.linen as nn

    from diffconv.jax.linen import DiffConv

    def conv(features: int, k: int, strides: int = 1, name: str | None = None) -> nn.Module:
        if variant == "diff":
            return DiffConv(features, (k, k), strides=strides, dtype=dtype, param_dtype=dtype, name=name)
        return nn.Conv(features, (k, k), strides=strides, padding="SAME", dtype=dtype, param_dtype=dtype, name=name)

    return conv


@functools.lru_cache(maxsize=None)
def _jax_nets() -> Any:
    """The Flax twins of :func:`_torch_nets`' models (layers named explicitly, so that the
    zero-padded and the DiffConv model share one parameter tree)."""
    import flax.linen as nn
    import jax.numpy as jnp

    class Stack(nn.Module):
        conv: Callable[..., nn.Module]
        channels: int
        k: int

        @nn.compact
        def __call__(self, x):
            for i in range(4):
                x = self.conv(self.channels, self.k, name=f"conv{i}")(x)
                x = x if i == 3 else nn.relu(x)
            return x

    class UNet(nn.Module):
        conv: Callable[..., nn.Module]
        channels: int
        k: int

        def block(self, x, f, name):
            for i in range(2):
                x = jnp.tanh(self.conv(f, self.k, name=f"{name}_{i}")(x))
            return x

        @nn.compact
        def __call__(self, x):
            f = self.channels
            e0 = self.block(x, f, "enc0")
            e1 = self.block(nn.max_pool(e0, (2, 2), (2, 2)), 2 * f, "enc1")
            m = self.block(nn.max_pool(e1, (2, 2), (2, 2)), 4 * f, "mid")
            up1 = nn.ConvTranspose(2 * f, (2, 2), (2, 2), name="up1")(m)
            d1 = self.block(jnp.concatenate([up1, e1], -1), 2 * f, "dec1")
            up0 = nn.ConvTranspose(f, (2, 2), (2, 2), name="up0")(d1)
            d0 = self.block(jnp.concatenate([up0, e0], -1), f, "dec0")
            return nn.Conv(3, (1, 1), name="head")(d0)

    class Gelu(nn.Module):
        conv: Callable[..., nn.Module]
        channels: int
        k: int

        @nn.compact
        def __call__(self, x):
            c = self.channels
            for i, w in enumerate([c, 2 * c, 2 * c, c, 3]):
                x = self.conv(w, self.k, name=f"conv{i}")(x)
                x = x if i == 4 else nn.gelu(x)
            return x

    class ResNet(nn.Module):
        conv: Callable[..., nn.Module]
        channels: int
        k: int

        @nn.compact
        def __call__(self, x):
            widths = [self.channels, 2 * self.channels, 4 * self.channels]
            x = nn.silu(self.conv(widths[0], self.k, name="stem")(x))
            for i, w in enumerate(widths):
                h = nn.silu(self.conv(w, self.k, name=f"block{i}_0")(x))
                x = nn.silu(x + self.conv(w, self.k, name=f"block{i}_1")(h))
                if i < 2:
                    x = nn.silu(self.conv(widths[i + 1], self.k, strides=2, name=f"down{i}")(x))
            return nn.Conv(3, (1, 1), name="head")(x)

    return argparse.Namespace(Stack=Stack, UNet=UNet, Gelu=Gelu, ResNet=ResNet)


def _registered(name: str, cls: str, **options: Any) -> BenchModel:
    """A model whose torch and Flax classes are :func:`_torch_nets`' / :func:`_jax_nets`' ``cls``,
    built as ``cls(conv, channels, k)``."""
    return register(BenchModel(
        name,
        torch=lambda v, c, k: getattr(_torch_nets(), cls)(_torch_conv(v), c, k),
        jax=lambda v, c, k, dtype: getattr(_jax_nets(), cls)(_jax_conv(v, dtype), c, k),
        **options,
    ))


_registered("stack", "Stack", in_channels=lambda c: c, batch=8, adam=False)
_registered("unet", "UNet", in_channels=lambda c: 3, size_multiple=4)
_registered("gelu", "Gelu", in_channels=lambda c: 3)
_registered("resnet", "ResNet", in_channels=lambda c: 3, size_multiple=4)


def _decoder_geometry(k: int) -> dict[str, int]:
    """Padding and output padding that make a stride-2 transposed convolution of kernel ``k`` double its input."""
    return {"kernel_size": k, "stride": 2, "padding": (k - 1) // 2, "output_padding": k % 2}


def _torch_decoder(variant: str, c: int, k: int) -> Any:
    from diffconv.models.decoder import torch_decoder
    from diffconv.torch import DiffConvTranspose2d

    return torch_decoder((4 * c, 2 * c, c), 3, transposed=DiffConvTranspose2d if variant == "diff" else None,
                         **_decoder_geometry(k))


def _flax_decoder(variant: str, c: int, k: int, dtype: Any) -> Any:
    import flax.linen as nn

    from diffconv.jax.linen import DiffConvTranspose
    from diffconv.models.decoder import flax_decoder

    cls = DiffConvTranspose if variant == "diff" else nn.ConvTranspose
    return flax_decoder((4 * c, 2 * c, c), 3, transposed=functools.partial(cls, dtype=dtype, param_dtype=dtype),
                        **_decoder_geometry(k))


# Three stride-2 transposed convolutions 4c -> 2c -> c -> 3, ReLU between: (S/8)^2 maps -> S^2.
register(BenchModel("decoder", torch=_torch_decoder, jax=_flax_decoder, in_channels=lambda c: 4 * c,
                    size_multiple=8, input_divisor=8))


# ------------------------------------------------------------------------------------ options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", nargs="+", choices=["torch", "jax"], default=["torch", "jax"],
                        help="frameworks to measure (jax is skipped when diffconv.jax is missing)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the model's, 4 or 8)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--channels", type=int, default=32,
                        help="the models' base width (stack width, first-level features; default 32)")
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["stack", "unet"],
                        help=f"models to time (of {', '.join(MODELS)}; default stack unet)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    parser.add_argument("--compile-repeats", type=int, default=2,
                        help="JAX: compilations per variant, the fastest reported (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process CPU clock instead of the wall clock (torch on CPU; steadier "
                             "on a shared machine, but counts every thread's time)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc only: keep freed heap memory mapped instead of returning it to the system "
                             "(mallopt M_TRIM_THRESHOLD), so that each step does not page-fault its buffers in "
                             "again; applies to both variants (see docs/benchmarks.md)")
    parser.add_argument("--torch-compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="run both torch models through torch.compile(fullgraph=True) with BACKEND (default "
                             "inductor); its first step (the compilation) is timed apart. JAX steps are always jitted")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and 2 repeats: checks that everything runs, numbers mean little")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    s = {
        "batch": args.batch, "size": args.size, "channels": args.channels, "kernel_sizes": list(args.kernel_sizes),
        "repeats": args.repeats, "warmup": args.warmup, "compile_repeats": args.compile_repeats,
    }
    if args.quick:
        s.update(batch=args.batch or 1, size=min(args.size, 8), channels=min(args.channels, 4),
                 kernel_sizes=list(args.kernel_sizes)[:1], repeats=min(args.repeats, 2), warmup=0, compile_repeats=1)
    for name in ("size", "channels", "repeats", "compile_repeats"):
        if s[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {s[name]}")
    if s["batch"] is not None and s["batch"] < 1:
        raise ValueError(f"--batch must be >= 1, got {s['batch']}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if s["warmup"] < 0:
        raise ValueError(f"--warmup must be >= 0, got {s['warmup']}")
    for k in s["kernel_sizes"]:
        if k < 1:
            raise ValueError(f"--kernel-sizes must be >= 1, got {k}")
    for name in args.models:
        m = MODELS[name].size_multiple
        if s["size"] % m:
            raise ValueError(f"--size must be a multiple of {m} for the {name} model (it halves it), got {s['size']}")
    return s


# ----------------------------------------------------------------------------------------- torch


def _torch_cpu_peak(step: Callable[[], None]) -> int:
    """Peak of live bytes allocated during ``step`` (CPU), from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def torch_peak(step: Callable[[], None], device: str) -> int:
    """Peak of bytes allocated during ``step`` beyond what was allocated before it: CUDA's
    allocator peak on ``"cuda"``, else :func:`_torch_cpu_peak`."""
    if device != "cuda":
        return _torch_cpu_peak(step)
    import torch

    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _torch_cases(model: str, k: int, s: dict[str, Any], device: str, dtype_name: str):
    """Yield ``(variant, step)`` for the zero-padded model and its DiffConv twin (same weights)."""
    import torch
    from torch import nn

    spec = MODELS[model]
    dtype = getattr(torch, dtype_name)
    batch = s["batch"] or spec.batch
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    zero = spec.torch("zero", s["channels"], k).to(device, dtype)
    diff = spec.torch("diff", s["channels"], k).to(device, dtype)
    diff.load_state_dict(zero.state_dict())
    side = _input_side(spec, s["size"])
    x = torch.randn(batch, spec.in_channels(s["channels"]), side, side, generator=g).to(device, dtype)
    with torch.no_grad():
        out_shape = zero(x).shape
    target = torch.randn(out_shape, generator=g).to(device, dtype)

    def make_step(net: nn.Module) -> Callable[[], None]:
        opt = torch.optim.Adam(net.parameters(), lr=1e-4) if spec.adam else None
        backend = s.get("torch_compile")
        forward = torch.compile(net, fullgraph=True, backend=backend) if backend else net

        def step() -> None:
            for p in net.parameters():
                p.grad = None
            loss = nn.functional.mse_loss(forward(x), target)
            loss.backward()
            if opt is not None:
                opt.step()

        return step

    return [("zero", make_step(zero)), ("diff", make_step(diff))]


def _run_torch(model: str, k: int, s: dict[str, Any], device: str, dtype_name: str, bar) -> Result:
    import torch

    clock = time.process_time if s.get("cpu_time") and device == "cpu" else time.perf_counter
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch.cuda.is_available() is False")
    cases = _torch_cases(model, k, s, device, dtype_name)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    compile_s: dict[str, float] = {}
    for name, step in cases:             # the first step: compilation under torch.compile
        t0 = time.perf_counter()
        step()
        sync()
        compile_s[name] = time.perf_counter() - t0
    for _ in range(s["warmup"]):
        for _, step in cases:
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for r in range(s["repeats"]):
        # Alternate which variant goes first, so that neither always runs right after the other.
        for name, step in (cases if r % 2 == 0 else cases[::-1]):
            sync()
            t0 = clock()
            step()
            sync()
            times[name].append(clock() - t0)
        bar.update(1)
    memory = {name: torch_peak(step, device) for name, step in cases}
    method = "torch.cuda.max_memory_allocated" if device == "cuda" else "torch.profiler allocation events"
    compiled = "torch.compile's first step (compilation included)" if s.get("torch_compile") else \
        "eager first step (torch compiles nothing)"
    return _result("torch", model, k, device, dtype_name, s, times, memory, method, compile_s, compiled)


# ------------------------------------------------------------------------------------------- jax


def _jax_available() -> bool:
    try:
        import diffconv.jax.linen  # noqa: F401
    except ImportError:
        return False
    return True


def _jax_memory(compiled) -> int:
    ma = compiled.memory_analysis()
    if ma is None:
        return 0
    return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes)


def _jax_train_step(net: Any, x: Any, target: Any, opt: Any, adam: bool) -> Callable[..., Any]:
    """The jitted step ``train(params, opt_state) -> (params, opt_state, loss)`` of the MSE of
    ``net.apply(params, x)`` against ``target``: an ``opt`` update with ``adam``, else the
    gradients in place of the new parameters."""
    import jax
    import jax.numpy as jnp
    import optax

    def train(p, o):
        loss, grads = jax.value_and_grad(lambda q: jnp.mean((net.apply(q, x) - target) ** 2))(p)
        if not adam:
            return grads, o, loss
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    return jax.jit(train)


def _run_jax(model: str, k: int, s: dict[str, Any], device: str, dtype_name: str, bar) -> Result:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    spec = MODELS[model]
    platform_name = "gpu" if device == "cuda" else "cpu"
    dev = jax.devices(platform_name)[0]
    dtype = getattr(jnp, dtype_name)
    batch = s["batch"] or spec.batch
    # Data and weights from NumPy: JAX's random numbers compile slowly (seconds for a UNet's init).
    rng = np.random.default_rng(0)
    side = _input_side(spec, s["size"])
    shape = (batch, side, side, spec.in_channels(s["channels"]))
    x = jax.device_put(jnp.asarray(rng.standard_normal(shape), dtype), dev)
    nets = {name: spec.jax(name, s["channels"], k, dtype) for name in ("zero", "diff")}

    def weights(leaf):               # kernels ~ N(0, 1/fan_in) (Flax's default scale), biases 0
        fan_in = math.prod(leaf.shape[:-1])
        values = rng.standard_normal(leaf.shape) / math.sqrt(fan_in) if leaf.ndim > 1 else np.zeros(leaf.shape)
        return jax.device_put(jnp.asarray(values, leaf.dtype), dev)

    # One parameter tree, shared by both.
    params = jax.tree.map(weights, jax.eval_shape(nets["zero"].init, jax.random.PRNGKey(0), x))
    out = jax.eval_shape(nets["zero"].apply, params, x)
    target = jax.device_put(jnp.asarray(rng.standard_normal(out.shape), dtype), dev)
    opt = optax.adam(1e-4)

    trains = {name: _jax_train_step(net, x, target, opt, spec.adam) for name, net in nets.items()}

    state = (params, jax.jit(opt.init)(params))
    compile_s: dict[str, float] = {name: math.inf for name in trains}
    compiled = {}
    for r in range(s["compile_repeats"]):
        for name in (list(trains) if r % 2 == 0 else list(trains)[::-1]):
            if r:
                jax.clear_caches()       # else a repeat finds the compiled program in the cache
            t0 = time.perf_counter()
            compiled[name] = trains[name].lower(*state).compile()
            compile_s[name] = min(compile_s[name], time.perf_counter() - t0)
    cases = [(name, compiled[name]) for name in trains]

    def run_once(step):
        jax.block_until_ready(step(*state))

    for _ in range(s["warmup"]):
        for _, step in cases:
            run_once(step)
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for r in range(s["repeats"]):
        for name, step in (cases if r % 2 == 0 else cases[::-1]):
            t0 = time.perf_counter()
            run_once(step)
            times[name].append(time.perf_counter() - t0)
        bar.update(1)
    memory = {name: _jax_memory(step) for name, step in cases}
    return _result("jax", model, k, device, dtype_name, s, times, memory, "XLA compiled memory_analysis", compile_s,
                   "jax.jit lower + compile of the train step")


# ------------------------------------------------------------------------------------- reporting


def _result(framework: str, model: str, k: int, device: str, dtype_name: str, s: dict[str, Any],
            times: dict[str, list[float]], memory: dict[str, int], method: str,
            compile_s: dict[str, float], compile_method: str = "") -> Result:
    tz, td = statistics.median(times["zero"]), statistics.median(times["diff"])
    paired = [d / z for z, d in zip(times["zero"], times["diff"])]
    q1, _, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0],) * 3
    mz, md = memory["zero"], memory["diff"]
    return Result(
        framework=framework, model=model, kernel_size=k, device=device, dtype=dtype_name,
        batch=s["batch"] or MODELS[model].batch, size=s["size"], channels=s["channels"], repeats=s["repeats"],
        time_zero_s=tz, time_diff_s=td, time_ratio=td / tz,
        time_ratio_paired=statistics.median(paired), time_ratio_q1=q1, time_ratio_q3=q3,
        memory_zero_bytes=int(mz), memory_diff_bytes=int(md), memory_ratio=(md / mz) if mz else math.nan,
        memory_method=method, time_zero_all_s=times["zero"], time_diff_all_s=times["diff"],
        compile_zero_s=compile_s.get("zero"), compile_diff_s=compile_s.get("diff"), compile_method=compile_method,
    )


def _table(results: list[Result]) -> str:
    head = (f"{'framework':9s} {'model':7s} {'k':>2s} {'zero ms':>9s} {'diff ms':>9s} {'time x':>7s} "
            f"{'paired x (q1-q3)':>19s} {'zero MB':>9s} {'diff MB':>9s} {'mem x':>6s} "
            f"{'compile s zero/diff':>20s} {'x':>5s}")
    lines = [head, "-" * len(head)]
    for r in results:
        compiled = ""
        if r.compile_zero_s is not None and r.compile_diff_s is not None:
            compiled = (f"{r.compile_zero_s:9.2f} / {r.compile_diff_s:8.2f} "
                        f"{r.compile_diff_s / r.compile_zero_s:5.2f}")
        lines.append(
            f"{r.framework:9s} {r.model:7s} {r.kernel_size:2d} {1e3 * r.time_zero_s:9.1f} {1e3 * r.time_diff_s:9.1f} "
            f"{r.time_ratio:7.3f} {r.time_ratio_paired:6.3f} ({r.time_ratio_q1:.2f}-{r.time_ratio_q3:.2f}) "
            f"{r.memory_zero_bytes / 2**20:9.1f} {r.memory_diff_bytes / 2**20:9.1f} {r.memory_ratio:6.3f} {compiled}"
        )
    methods = dict.fromkeys(f"{r.framework}: {r.compile_method}" for r in results if r.compile_method)
    if methods:
        lines.append("compile s: " + "; ".join(methods))
    return "\n".join(lines)


def keep_freed_memory() -> None:
    """Tell glibc's allocator to keep freed memory mapped for the rest of the process.

    By default glibc returns the top of the heap to the system once more than a threshold is
    free (and that threshold tracks the largest buffer freed so far), so a training step whose
    buffers are freed at its end faults their pages in again next step. Raises ``RuntimeError``
    where the C library has no ``mallopt`` (not glibc)."""
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3                  # glibc's <malloc.h> parameters
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        raise RuntimeError(f"--keep-freed-memory needs glibc's mallopt: {e}") from None
    # Trimming only above 1 GiB; buffers up to 32 MiB (glibc's largest allowed value) on the heap.
    if not (mallopt(m_trim_threshold, 2**30) and mallopt(m_mmap_threshold, 32 * 2**20)):
        raise RuntimeError("--keep-freed-memory: mallopt refused the settings")


def _machine() -> dict[str, Any]:
    import os

    info = {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def _device_name(framework: str, device: str) -> str:
    """The accelerator's name as ``framework`` reports it (``"cpu"`` on the CPU)."""
    if device == "cpu":
        return "cpu"
    if framework == "torch":
        import torch

        return torch.cuda.get_device_name()
    import jax

    return jax.devices("gpu")[0].device_kind


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    s = _settings(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    s["threads"] = args.threads
    s["cpu_time"] = bool(args.cpu_time)
    s["keep_freed_memory"] = bool(args.keep_freed_memory)
    s["torch_compile"] = args.torch_compile
    if args.keep_freed_memory:
        keep_freed_memory()
    frameworks = list(dict.fromkeys(args.framework))
    if "jax" in frameworks and not _jax_available():
        print("diffconv.jax is not importable: skipping the jax measurements")
        frameworks.remove("jax")
    runners = {"torch": _run_torch, "jax": _run_jax}
    jobs = [(fw, m, k) for fw in frameworks for m in args.models for k in s["kernel_sizes"]]
    results: list[Result] = []
    with tqdm(total=len(jobs) * s["repeats"], desc="speed", unit="step") as bar:
        for fw, m, k in jobs:
            bar.set_postfix_str(f"{fw} {m} k={k}")
            results.append(runners[fw](m, k, s, args.device, args.dtype, bar))
    print(_table(results))
    if args.json:
        ran = list(dict.fromkeys(fw for fw, _, _ in jobs))
        versions = {fw: __import__(fw).__version__ for fw in ran}
        device_names = {fw: _device_name(fw, args.device) for fw in ran}
        payload = {
            "machine": _machine(), "versions": versions, "settings": s, "device": args.device,
            "device_names": device_names, "dtype": args.dtype,
            "result_keys": list(RESULT_KEYS), "results": [asdict(r) for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.json}")
    return 0
