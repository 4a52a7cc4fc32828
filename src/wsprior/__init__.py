"""napari-wsprior: computational-microscopy reconstruction with a whitened-score diffusion prior.

>>> import wsprior
>>> phase = wsprior.tie_phase(stack, z_um=[-2, 0, 2], wavelength_um=0.53,
...                           pixel_size_um=0.3, method="tikhonov")       # doctest: +SKIP
"""
from .api import available_methods, deblur_dehaze, idt, tie_phase
from .prior import load_prior

__version__ = "0.1.0"
__all__ = ["deblur_dehaze", "tie_phase", "idt", "load_prior", "available_methods", "__version__"]
