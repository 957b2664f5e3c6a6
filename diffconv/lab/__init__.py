"""The experiments and the ``diffconv`` command line, built on the core and the two backends.

Nothing here is needed to use DiffConv layers; it is what measures and demonstrates them:

- :mod:`diffconv.lab.cli` and :mod:`diffconv.lab.commands`: the ``diffconv`` command
  (``accuracy``, ``parity``, ``speed``, ``train``, ``demo``).
- :mod:`diffconv.lab.fields`, :mod:`diffconv.lab.navier_stokes`: the test fields of the
  boundary-accuracy experiment (Chebyshev products, spherical harmonics, a 2-D Navier-Stokes
  solver); :mod:`diffconv.lab.baselines`: the padding methods DiffConv is compared with;
  :mod:`diffconv.lab.userdata`: loading and checking a user's arrays;
  :mod:`diffconv.lab.transpose_accuracy`: the experiment for transposed convolutions.
- :mod:`diffconv.lab.models`: small networks and a synthetic task for ``diffconv train``;
  :mod:`diffconv.lab.bench`: the networks and measurement helpers of ``diffconv speed``.
- :mod:`diffconv.lab.sharding`: data- and spatially-parallel JAX training helpers.

Nothing is imported here, so that using one part never imports a framework.
"""
