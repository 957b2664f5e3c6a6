"""Small reference architectures and a synthetic task for trying DiffConv in real models.

- :mod:`diffconv.lab.models.synthetic`: smooth random fields, denoising / super-resolution pairs
  and boundary-ring error metrics (NumPy only).
- :mod:`diffconv.lab.models.torch_nets`: a PyTorch UNet and a ResNet of basic blocks, each taking
  a ``conv`` factory.
- :mod:`diffconv.lab.models.flax_unet`: the same UNet in Flax linen, taking a conv class.

Nothing is imported here, so using one framework never imports the other.
"""
