"""Benchmark tooling behind ``diffconv speed``.

- :mod:`diffconv.bench.networks`: the registry of timed models (:data:`~diffconv.bench.networks.MODELS`),
  built from :mod:`~diffconv.bench.torch_models`, :mod:`~diffconv.bench.flax_models` and MONAI's
  networks (:mod:`~diffconv.bench.monai_networks`).
- :mod:`diffconv.bench.measure`: framework-level helpers: alternated rounds, first-step time,
  peak memory, train steps.
- :mod:`diffconv.bench.runs`: one registered model timed in all its variants, as a
  :class:`~diffconv.bench.runs.Result`.

Nothing is imported here, so that naming a model never imports a framework.
"""
