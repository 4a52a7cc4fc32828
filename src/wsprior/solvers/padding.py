"""Mirror padding for Fourier-domain solvers: removes the jump at the borders that a periodic FFT
would otherwise turn into ringing or wrap-around artefacts."""
from __future__ import annotations

import scipy.fft
import torch
import torch.nn.functional as F


def mirror_pad(x: torch.Tensor, widths: tuple[int, int], *,
               fast_fft: bool = True) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Mirror-extend ``x`` (..., Y, X) by at least ``widths`` = (wy, wx) pixels on each side
    (grown to a fast FFT size when ``fast_fft``); returns the padded array and the slices of
    the last two axes that crop back to the original field. Widths as large as the image fall
    back to edge replication (a mirror needs the image to be wider than the pad)."""
    shape = [n + 2 * w for n, w in zip(x.shape[-2:], widths)]
    if fast_fft:
        shape = [scipy.fft.next_fast_len(n) for n in shape]
    return mirror_pad_to(x, tuple(shape))


def mirror_pad_to(x: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Mirror-extend ``x`` (..., Y, X) to exactly ``shape``, centred as ``mirror_pad`` does."""
    ny, nx = x.shape[-2:]
    top, left = (shape[0] - ny) // 2, (shape[1] - nx) // 2
    pads = (left, shape[1] - nx - left, top, shape[0] - ny - top)
    crop = (slice(top, top + ny), slice(left, left + nx))
    if not any(pads):
        return x, crop
    mode = "reflect" if max(pads[:2]) < nx and max(pads[2:]) < ny else "replicate"
    flat = x.reshape(-1, 1, ny, nx)
    padded = F.pad(flat, pads, mode=mode)
    return padded.reshape(*x.shape[:-2], *shape), crop
