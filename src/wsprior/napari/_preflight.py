"""Checks made before a run starts, in the widget's words: the prior file and the compute
device. (The library finds these too, but only once the worker has started.)"""
from __future__ import annotations

import torch

from ..prior.diffusion_prior import check_prior_source
from ._fields import is_diffusion


def check_compute(params: dict, labels: dict[str, str]) -> None:
    """The prior of a diffusion method can be read and the chosen device exists."""
    if is_diffusion(params["method"]):
        check_prior(params.get("prior", "default"), labels.get("prior", "prior"))
    check_device(params.get("device", "auto"), labels.get("device", "device"))


def check_prior(prior: str | None, label: str) -> None:
    """A shipped prior's name, or a .safetensors file that exists and holds a prior."""
    check_prior_source(prior, label, "; choose a .safetensors prior or leave the field empty "
                                     "for the shipped one")


def check_device(device: str, label: str) -> None:
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{label} is {device!r} but this computer has no CUDA GPU (or torch "
                         f"was installed without CUDA); choose 'auto' or 'cpu'")
