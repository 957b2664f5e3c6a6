"""Benchmark tooling behind ``diffconv speed``.

- :mod:`diffconv.lab.bench.networks`: the registry of timed models (:data:`~diffconv.lab.bench.networks.MODELS`),
  built from :mod:`~diffconv.lab.bench.torch_models`, :mod:`~diffconv.lab.bench.flax_models` and MONAI's
  networks (:mod:`~diffconv.lab.bench.monai_networks`).
- :mod:`diffconv.lab.bench.measure`: framework-level helpers: alternated rounds, first-step time,
  peak memory, train steps.
- :mod:`diffconv.lab.bench.runs`: one registered model timed in all its variants, as a
  :class:`~diffconv.lab.bench.runs.Result`.

Nothing is imported here, so that naming a model never imports a framework.
"""
