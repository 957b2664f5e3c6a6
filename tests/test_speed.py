"""The ``diffconv speed`` command and its measurement helpers (:mod:`diffconv.lab.bench`)."""

from __future__ import annotations

import json
import math
import statistics
import sys

import pytest
import torch

from diffconv.lab.cli import main


def test_cpu_peak_memory_follows_allocations():
    from diffconv.lab.bench.measure import torch_cpu_peak

    def step():
        a = torch.empty(1_000_000, dtype=torch.uint8)
        b = torch.empty(3_000_000, dtype=torch.uint8)
        del a
        c = torch.empty(2_500_000, dtype=torch.uint8)
        del b, c

    peak = torch_cpu_peak(step)
    assert 5_500_000 <= peak < 5_600_000


def test_alternated_rounds_rotate_the_order():
    """Each round starts one case later, so that no case always runs first or after the same one."""
    from diffconv.lab.bench.measure import alternated_rounds

    order: list[str] = []
    cases = [(name, lambda name=name: order.append(name)) for name in "abc"]
    times = alternated_rounds(cases, 3, clock=lambda: 0.0)
    assert "".join(order) == "abcbcacab"
    assert times == {"a": [0.0] * 3, "b": [0.0] * 3, "c": [0.0] * 3}


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_speed_quick_writes_documented_json(framework, tmp_path):
    """Every registered model of the framework runs in all its variants; the JSON holds the
    documented keys, and a compile (or first-step) time for each variant with the method that
    measured it."""
    if framework == "jax":
        pytest.importorskip("jax")
    from diffconv.lab.bench.networks import MODELS, missing
    from diffconv.lab.commands.speed import RESULT_KEYS

    models = [name for name, spec in MODELS.items() if getattr(spec, framework) and not missing(spec)]
    path = tmp_path / "speed.json"
    assert main(["speed", "--quick", "--framework", framework, "--models", *models, "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["result_keys"] == list(RESULT_KEYS)
    assert data["device_names"] == {framework: "cpu"}
    assert {(r["framework"], r["model"]) for r in data["results"]} == {(framework, m) for m in models}
    for r in data["results"]:
        assert set(RESULT_KEYS) <= set(r)
        for key in ("time_ratio", "time_ratio_paired", "memory_ratio", "time_zero_s", "time_diff_s",
                    "compile_zero_s", "compile_diff_s"):
            assert math.isfinite(r[key]) and r[key] > 0
        # The ratios are the recorded per-round times' statistics, recomputed here.
        zero, diff = r["time_zero_all_s"], r["time_diff_all_s"]
        assert r["time_ratio"] == pytest.approx(statistics.median(diff) / statistics.median(zero), rel=1e-12)
        paired = statistics.median([d / z for z, d in zip(zero, diff)])
        assert r["time_ratio_paired"] == pytest.approx(paired, rel=1e-12)
        assert r["memory_ratio"] == pytest.approx(r["memory_diff_bytes"] / r["memory_zero_bytes"], rel=1e-12)
        assert r["memory_zero_bytes"] > 0 and r["memory_diff_bytes"] > 0
        assert r["compile_method"] == ("jax.jit lower + compile of the train step" if framework == "jax"
                                       else "eager first step (torch compiles nothing)")


def test_speed_reports_reflect_padding_for_three_variant_models(tmp_path, capsys):
    """A model with a reflect-padded variant (here one layer) runs in three variants, alternated;
    the reflect ratios are the recorded rounds' medians, in the JSON and in a second table."""
    from diffconv.lab.bench import networks
    from diffconv.lab.bench.monai_networks import VARIANTS, with_border

    networks.register(networks.BenchModel(
        "one_layer", torch=lambda v, c, k: with_border(torch.nn.Conv2d(c, c, k, padding="same"), v), jax=None,
        in_channels=lambda c: c, batch=2, adam=False, variants=VARIANTS,
    ))
    try:
        path = tmp_path / "speed.json"
        assert main(["speed", "--quick", "--models", "one_layer", "--json", str(path)]) == 0
    finally:
        del networks.MODELS["one_layer"]
    out = capsys.readouterr().out
    assert "one_layer: no jax model, skipped" in out and "reflect padding" in out
    (r,) = json.loads(path.read_text())["results"]
    assert (r["framework"], r["variants"], r["repeats"]) == ("torch", ["zero", "reflect", "diff"], 2)
    zero, reflect, diff = r["time_zero_all_s"], r["time_reflect_all_s"], r["time_diff_all_s"]
    assert r["time_ratio_reflect"] == pytest.approx(statistics.median([a / b for a, b in zip(reflect, zero)]))
    assert r["time_ratio_diff_reflect"] == pytest.approx(statistics.median([a / b for a, b in zip(diff, reflect)]))
    assert r["time_ratio_diff_reflect_q1"] <= r["time_ratio_diff_reflect"] <= r["time_ratio_diff_reflect_q3"]
    assert r["memory_reflect_bytes"] > 0 and math.isfinite(r["memory_ratio_reflect"]) and r["compile_reflect_s"] > 0


def test_speed_times_a_monai_network_in_three_variants(tmp_path):
    """A MONAI network runs as zero padding, reflect padding and DiffConv at its own quick shape."""
    pytest.importorskip("monai")
    path = tmp_path / "speed.json"
    assert main(["speed", "--quick", "--framework", "torch", "--models", "segresnet", "--json", str(path)]) == 0
    (r,) = json.loads(path.read_text())["results"]
    assert (r["framework"], r["model"], r["variants"]) == ("torch", "segresnet", ["zero", "reflect", "diff"])
    assert (r["batch"], r["size"], r["dims"], r["channels"], r["kernel_size"]) == (1, 16, 2, 8, 3)
    assert len(r["time_zero_all_s"]) == len(r["time_reflect_all_s"]) == len(r["time_diff_all_s"]) == 2
    assert all(math.isfinite(r[key]) for key in ("time_ratio_paired", "time_ratio_reflect", "time_ratio_diff_reflect"))


def test_monai_alias_names_the_five_networks():
    from diffconv.lab.bench.networks import MONAI_MODELS
    from diffconv.lab.cli import build_parser
    from diffconv.lab.commands.speed import _models

    args = build_parser().parse_args(["speed", "--models", "stack", "monai", "segresnet"])
    assert _models(args) == ["stack", *MONAI_MODELS]
    assert MONAI_MODELS == ("basicunet", "resunet", "segresnet", "dynunet3d", "attentionunet")


def test_speed_without_monai_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "monai", None)             # `import monai` raises ImportError
    assert main(["speed", "--framework", "torch", "--models", "stack", "basicunet"]) == 2
    out, err = capsys.readouterr()
    assert err == ("diffconv speed: error: the basicunet model needs monai, which is not installed "
                   "(pip install 'diffconv[bench]')\n")
    assert out == ""


def test_speed_times_a_newly_registered_model(tmp_path):
    """One registration adds a model to ``--models`` and to the run: here a single layer, built
    by the registry's own conv factories, whose zero-padded and DiffConv variants differ."""
    pytest.importorskip("jax")
    from diffconv.lab.bench import networks
    from diffconv.lab.bench.flax_models import flax_conv
    from diffconv.lab.bench.torch_models import torch_conv

    model = networks.BenchModel(
        "one_layer",
        torch=lambda v, c, k: torch_conv(v)(c, c, k),
        jax=lambda v, c, k, dtype: flax_conv(v, dtype)(c, k),
        in_channels=lambda c: c, batch=2, adam=False,
    )
    networks.register(model)
    try:
        path = tmp_path / "speed.json"
        assert main(["speed", "--quick", "--models", "one_layer", "--json", str(path)]) == 0
    finally:
        del networks.MODELS["one_layer"]
    results = json.loads(path.read_text())["results"]
    assert {(r["framework"], r["model"], r["batch"]) for r in results} == {("torch", "one_layer", 1),
                                                                          ("jax", "one_layer", 1)}
    with pytest.raises(SystemExit):                                  # gone again
        main(["speed", "--quick", "--models", "one_layer"])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
@pytest.mark.parametrize("compiled", [False, True])
def test_speed_torch_compile_runs_the_compiled_models(compiled, tmp_path):
    """``--torch-compile BACKEND`` runs both models through torch.compile (compile times
    recorded); the settings record the backend."""
    torch._dynamo.reset()
    path = tmp_path / "speed.json"
    argv = ["speed", "--quick", "--framework", "torch", "--models", "stack", "--json", str(path)]
    assert main(argv + (["--torch-compile", "eager"] if compiled else [])) == 0
    data = json.loads(path.read_text())
    assert data["settings"]["torch_compile"] == ("eager" if compiled else None)
    (r,) = data["results"]
    assert math.isfinite(r["time_ratio_paired"]) and r["memory_diff_bytes"] > 0
    for key in ("compile_zero_s", "compile_diff_s"):
        assert r[key] > 0
    assert r["compile_method"].startswith("torch.compile" if compiled else "eager")


@pytest.mark.slow
def test_speed_compiles_a_monai_network_that_breaks_the_graph(tmp_path):
    """MONAI's BasicUNet calls ``torch.jit.isinstance``, which dynamo will not trace: under
    ``--torch-compile`` it compiles in parts (fullgraph would raise), all three variants."""
    pytest.importorskip("monai")
    torch._dynamo.reset()
    path = tmp_path / "speed.json"
    argv = ["speed", "--quick", "--framework", "torch", "--models", "basicunet", "--torch-compile", "eager",
            "--json", str(path)]
    assert main(argv) == 0
    (r,) = json.loads(path.read_text())["results"]
    assert r["compile_method"].startswith("torch.compile")
    assert all(r[f"compile_{v}_s"] > 0 for v in ("zero", "reflect", "diff"))
    assert math.isfinite(r["time_ratio_diff_reflect"])


def test_paired_ratio_is_the_median_of_per_round_ratios():
    """Per-round ratios 1.5, 1, 1.5, 0.5: their median is 1.25, while the ratio of the two
    medians (3 / 3) is 1; the report keeps both."""
    from diffconv.lab.bench.runs import make_result

    times = {"zero": [1.0, 2.0, 4.0, 8.0], "diff": [1.5, 2.0, 6.0, 4.0]}
    r = make_result(times, {"zero": 10, "diff": 11}, {}, memory_method="test", framework="torch", model="stack",
                    kernel_size=3, device="cpu", dtype="float32", batch=1, size=8, channels=2)
    assert r.time_ratio == pytest.approx(1.0)
    assert r.time_ratio_paired == pytest.approx(1.25)
    assert r.time_ratio_q1 <= 1.0 and r.time_ratio_q3 >= 1.5
    assert r.repeats == 4 and r.variants == ["zero", "diff"] and r.time_reflect_s is None


def _speed_status(argv: list[str]) -> int:
    """``diffconv speed ARGV``'s exit status, whether it returns or exits."""
    try:
        return main(["speed", *argv])
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv,match", [
    (["--size", "30"], "--size must be a multiple of 4 for the unet model"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--kernel-sizes", "0"], "--kernel-sizes must be >= 1, got 0"),
    (["--size", "30", "--models", "resnet"], "multiple of 4 for the resnet"),
    (["--compile-repeats", "0"], "--compile-repeats"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--batch", "-1"], "--batch must be >= 1, got -1"),
    (["--size", "abc"], "argument --size: invalid int value: 'abc'"),
    (["--models", "nosuchnet"], "argument --models: invalid choice: 'nosuchnet'"),
])
def test_speed_rejects_bad_arguments_in_one_line(argv, match, capsys):
    """A bad option prints one line, no usage and no traceback, and exits with status 2."""
    assert _speed_status(["--framework", "torch", *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("diffconv speed: error: ") and match in err
    assert err.count("\n") == 1 and out == ""


def test_speed_rejects_a_framework_without_the_models(capsys):
    pytest.importorskip("monai")
    assert _speed_status(["--framework", "jax", "--models", "segresnet"]) == 2
    out, err = capsys.readouterr()
    assert out == "segresnet: no jax model, skipped\n"
    assert err == "diffconv speed: error: none of the models segresnet exists in --framework jax\n"


def test_jax_memory_counts_arguments_outputs_and_temporaries():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from diffconv.lab.bench.measure import jax_memory

    x = jnp.ones((256, 256), jnp.float32)                    # 256 KiB in, 256 KiB out
    compiled = jax.jit(lambda a: jnp.tanh(a @ a) + 1.0).lower(x).compile()
    assert 2 * x.nbytes <= jax_memory(compiled) <= 4 * x.nbytes


@pytest.mark.slow
def test_keep_freed_memory_keeps_freed_buffers_mapped():
    """glibc by default returns freed 8 MiB buffers to the system (the next ones fault their
    pages in again); after ``keep_freed_memory`` it keeps them: the process's resident memory
    does not drop when 32 MiB of written buffers are freed. Each case runs in a child process,
    since the setting lasts for the whole process."""
    import subprocess

    script = """
import os, sys, torch
from diffconv.lab.bench.measure import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
before = resident()
buffers = [torch.ones(2**21) for _ in range(4)]     # 4 x 8 MiB, written in full
held = resident()
del buffers
print(held - before, held - resident())
"""

    def grown_and_returned(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        grown, returned = map(int, out.stdout.split())
        return grown, returned

    mib = 2**20
    grown, returned = grown_and_returned("default")
    assert grown >= 30 * mib and returned >= 30 * mib        # glibc's default gives it back
    grown, returned = grown_and_returned("keep")
    assert grown >= 30 * mib and returned <= 1 * mib


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_decoder_model_upsamples_the_input_eightfold_in_both_frameworks(k):
    """The registered decoder: input side S/8 -> output S in both variants and frameworks, the
    DiffConv variant built from the padding-free layers on the plain variant's state dict /
    parameter tree; equal to it for k <= 2 (no output reaches past the data at stride 2), else
    different (its border sees ghosts)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from diffconv.lab.bench.networks import MODELS, input_side
    from diffconv.jax.linen import DiffConvTranspose
    from diffconv.torch import DiffConvTranspose2d

    spec = MODELS["decoder"]
    side = input_side(spec, 32)
    assert side == 4
    zero, diff = spec.torch("zero", 2, k), spec.torch("diff", 2, k)
    assert sum(isinstance(m, DiffConvTranspose2d) for m in diff.modules()) == 3
    diff.load_state_dict(zero.state_dict())
    x = torch.randn(2, spec.in_channels(2), side, side)
    with torch.no_grad():
        yz, yd = zero(x), diff(x)
    assert yz.shape == yd.shape == (2, 3, 32, 32)
    assert torch.allclose(yz, yd) == (k <= 2)

    nets = {v: spec.jax(v, 2, k, jnp.float32) for v in ("zero", "diff")}
    xj = jnp.asarray(x.permute(0, 2, 3, 1).numpy())
    params = jax.eval_shape(nets["zero"].init, jax.random.key(0), xj)      # shapes only: fast
    assert jax.tree.structure(jax.eval_shape(nets["diff"].init, jax.random.key(0), xj)) == jax.tree.structure(params)
    assert sum(isinstance(m, DiffConvTranspose) for m in nets["diff"].layers) == 3
    assert jax.eval_shape(nets["diff"].apply, params, xj).shape == (2, 32, 32, 3)
