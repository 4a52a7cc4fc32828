"""Reconstruction quality metrics used by the tests, the demo and the benchmarks."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr(truth: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR (dB) with the data range of the ground truth."""
    truth, estimate = np.asarray(truth, float), np.asarray(estimate, float)
    return float(peak_signal_noise_ratio(truth, estimate, data_range=np.ptp(truth)))


def fitted_psnr(truth: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR (data range of the truth) of ``a·estimate + b`` least-squares fitted to ``truth``:
    blind to a global gain and offset (a haze level, a camera offset, an intensity unit), not
    to blur, haze fluctuations or noise."""
    truth, estimate = np.asarray(truth, np.float64), np.asarray(estimate, np.float64)
    design = np.stack([estimate.ravel(), np.ones(estimate.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, truth.ravel(), rcond=None)
    return psnr(truth, (design @ coef).reshape(truth.shape))


def ssim(truth: np.ndarray, estimate: np.ndarray) -> float:
    truth, estimate = np.asarray(truth, float), np.asarray(estimate, float)
    return float(structural_similarity(truth, estimate, data_range=np.ptp(truth)))


def rmse(truth: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth, float) - np.asarray(estimate, float)) ** 2)))


def zero_mean_rmse(truth: np.ndarray, estimate: np.ndarray) -> float:
    """RMSE after removing each image's (each slice's) mean. For quantities whose constant is not
    observable: the TIE phase (defined up to a constant) and IDT's Δn (the brightfield transfer
    functions vanish at u = 0)."""
    truth, estimate = np.asarray(truth, float), np.asarray(estimate, float)
    return rmse(truth - truth.mean(axis=(-2, -1), keepdims=True),
                estimate - estimate.mean(axis=(-2, -1), keepdims=True))
