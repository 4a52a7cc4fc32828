"""The whitened-score diffusion prior: SDE, network, training, checkpoints, shipped weights."""
from .diffusion_prior import DiffusionPrior, load_prior

__all__ = ["DiffusionPrior", "load_prior"]
