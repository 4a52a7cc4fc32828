"""Array plumbing: devices, numpy/torch conversion, returning the caller's array type."""
from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → cuda if available, else cpu (DESIGN.md §2)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]'; got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


def to_tensor(array, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    data = np.asarray(array)
    if any(stride < 0 for stride in data.strides) or not data.dtype.isnative:
        # torch takes neither flipped views (negative strides) nor non-native byte order
        data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    return torch.as_tensor(data, dtype=dtype, device=device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def is_dask(array) -> bool:
    return hasattr(array, "dask") and hasattr(array, "map_blocks")
