"""Shared pytest configuration.

- ``tests/`` on ``sys.path`` so that every test folder can ``import oracle`` and ``tolerances``.
- Hypothesis profiles: ``ci`` (derandomized: the same examples on every run; loaded when the
  ``CI`` environment variable is set, and also by default, so that ``.ci/run`` is reproducible
  wherever it runs), ``dev`` (random examples: ``HYPOTHESIS_PROFILE=dev``) and ``thorough``
  (random, 5x the examples: ``HYPOTHESIS_PROFILE=thorough``). ``HYPOTHESIS_PROFILE`` wins.
"""
import os
import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass
else:
    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                              suppress_health_check=_quiet)
    settings.register_profile("dev", deadline=None, suppress_health_check=_quiet)
    settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=_quiet)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")
