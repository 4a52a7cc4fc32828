"""Widefield measurement simulation, independent of ``wsprior.physics``: analytic Airy PSF
(Bessel J1, integrated over each pixel), scipy convolution of an object larger than the field
of view (no boundary assumption), a positive haze of out-of-focus light with Gaussian
correlation, Poisson photon noise and Gaussian read noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal, special

from .phantoms import fluorescence_phantom


def analytic_airy_psf(na: float, wavelength_um: float, pixel_size_um: float, size: int,
                      supersample: int = 7) -> np.ndarray:
    """``[2 J1(v)/v]²``, ``v = 2π NA r / λ``, averaged over each pixel area; sum 1."""
    fine = (np.arange(size * supersample) - (size * supersample - 1) / 2) / supersample
    ry, rx = np.meshgrid(fine * pixel_size_um, fine * pixel_size_um, indexing="ij")
    v = 2 * np.pi * na / wavelength_um * np.hypot(ry, rx)
    with np.errstate(invalid="ignore", divide="ignore"):
        airy = np.where(v > 0, (2 * special.j1(v) / v) ** 2, 1.0)
    binned = airy.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return binned / binned.sum()


def gaussian_haze(shape: tuple[int, int], sigma_um: float, pixel_size_um: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation width ``sigma_um``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_um / pixel_size_um,
                                    mode="wrap")
    return (field - field.mean()) / field.std()


@dataclass(frozen=True)
class WidefieldAcquisition:
    """Acquisition parameters in physical units (also written next to the sample data)."""
    na: float = 0.8
    wavelength_um: float = 0.52
    pixel_size_um: float = 0.1
    haze_sigma_um: float = 3.0      # correlation width of the out-of-focus haze
    haze_mean: float = 0.25         # mean haze, relative to the brightest in-focus structure
    haze_std: float = 0.08          # haze fluctuation (standard deviation), same units
    photons: float = 2000.0         # photons per pixel at relative intensity 1
    read_noise_photons: float = 2.0


def simulate_widefield(obj: np.ndarray, acq: WidefieldAcquisition, rng: np.random.Generator,
                       margin: int, periodic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Blur + haze + noise of ``obj`` (Y+2m, X+2m); returns (measurement, clean object) cropped
    to the central (Y, X), in relative intensity units (photon counts / ``photons``).

    ``periodic``: circular (FFT) convolution instead of the linear one, for an object that is
    itself periodic on its field (use ``margin=0``); the haze field is periodic either way."""
    psf_size = 2 * int(np.ceil(5 * acq.wavelength_um / acq.na / acq.pixel_size_um)) + 1
    psf = analytic_airy_psf(acq.na, acq.wavelength_um, acq.pixel_size_um, psf_size)
    blurred = (_circular_convolve(obj, psf) if periodic
               else signal.fftconvolve(obj, psf, mode="same"))
    haze = acq.haze_mean + acq.haze_std * gaussian_haze(obj.shape, acq.haze_sigma_um,
                                                         acq.pixel_size_um, rng)
    expected = np.clip(blurred + haze, 0, None) * acq.photons
    counts = rng.poisson(expected) + rng.normal(0, acq.read_noise_photons, obj.shape)
    crop = (slice(margin, obj.shape[0] - margin), slice(margin, obj.shape[1] - margin))
    return (counts / acq.photons)[crop].astype(np.float32), obj[crop].astype(np.float32)


def _circular_convolve(obj: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``obj ⊛ psf`` on the periodic grid of ``obj`` (the PSF's centre pixel at the origin; a
    PSF larger than the grid wraps around it)."""
    kernel = np.zeros(obj.shape)
    ys = (np.arange(psf.shape[0]) - psf.shape[0] // 2) % obj.shape[0]
    xs = (np.arange(psf.shape[1]) - psf.shape[1] // 2) % obj.shape[1]
    np.add.at(kernel, np.ix_(ys, xs), psf)
    return np.fft.irfft2(np.fft.rfft2(obj) * np.fft.rfft2(kernel), s=obj.shape)


def simulate_deblur_dehaze_pair(shape: tuple[int, int], acq: WidefieldAcquisition,
                                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fresh phantom and its simulated widefield measurement: ``(measurement, truth)``."""
    rng = np.random.default_rng(seed)
    margin = 2 * int(np.ceil(5 * acq.wavelength_um / acq.na / acq.pixel_size_um)) + 8
    big = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    obj = fluorescence_phantom(big, acq.pixel_size_um, rng)
    return simulate_widefield(obj, acq, rng, margin)
