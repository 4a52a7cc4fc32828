"""Widefield PSF and blur operator against independent computations (Bessel-J1 Airy, scipy)."""
import numpy as np
import pytest
import torch
from scipy import signal

from conftest import relative_adjoint_error
from wsprior.data.blur_haze import analytic_airy_psf
from wsprior.physics.blur_haze import Blur, make_psf, normalize_psf
from wsprior.physics.optics import airy_psf, gaussian_psf, gaussian_sigma_um


@pytest.mark.parametrize("na, wavelength, pixel", [(0.8, 0.52, 0.1), (1.4, 0.6, 0.065), (0.3, 0.5, 0.5)])
def test_pupil_psf_matches_analytic_airy(na, wavelength, pixel):
    ours = airy_psf(na, wavelength, pixel).numpy()
    reference = analytic_airy_psf(na, wavelength, pixel, ours.shape[0])
    assert abs(ours.sum() - 1) < 1e-9
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < 0.02


def test_otf_support_ends_at_incoherent_cutoff():
    na, wavelength, pixel = 0.5, 0.5, 0.1  # cut-off 2NA/λ = 2 cycles/µm, Nyquist 5
    psf = airy_psf(na, wavelength, pixel, size=101)
    otf = torch.fft.fft2(psf).abs()
    u = torch.fft.fftfreq(101, d=pixel)
    radius = torch.sqrt(u[:, None] ** 2 + u[None, :] ** 2)
    assert otf[radius > 1.1 * 2 * na / wavelength].max() < 2e-3
    assert otf[radius < 0.5 * 2 * na / wavelength].min() > 0.1


def test_gaussian_approximation_has_airy_core_width():
    na, wavelength, pixel = 0.8, 0.52, 0.02
    airy = airy_psf(na, wavelength, pixel).numpy()
    gauss = gaussian_psf(gaussian_sigma_um(na, wavelength), pixel, size=airy.shape[0]).numpy()
    centre = airy.shape[0] // 2
    # same peak height within 15 %: the 0.21 λ/NA rule matches the central lobe
    assert abs(gauss[centre, centre] / airy[centre, centre] - 1) < 0.15


def test_blur_is_adjoint_in_float64():
    psf = make_psf(na=0.8, wavelength_um=0.52, pixel_size_um=0.1).double()
    op = Blur(psf, (48, 37)).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 48, 37, dtype=torch.float64, generator=gen)
    y = torch.randn(2, 3, 48, 37, dtype=torch.float64, generator=gen)
    assert relative_adjoint_error(op, x, y) < 1e-5


def test_blur_matches_direct_convolution_without_wraparound():
    psf = make_psf(na=0.5, wavelength_um=0.6, pixel_size_um=0.1).double()
    x = torch.zeros(40, 50, dtype=torch.float64)
    x[2, 3] = 1.0          # a point next to the top-left corner
    x[20, 25] = 0.5
    blurred = Blur(psf, (40, 50)).double().A(x).numpy()
    reference = signal.convolve2d(x.numpy(), psf.numpy(), mode="same")
    np.testing.assert_allclose(blurred, reference, atol=1e-12)
    compact = gaussian_psf(0.15, 0.1)  # support of a few pixels
    corner = Blur(compact, (40, 50)).double().A(x).numpy()
    assert abs(corner[-10:, :]).max() < 1e-12  # nothing wrapped to the opposite border
    assert abs(corner[:, -10:]).max() < 1e-12


def test_measured_psf_is_centred_and_normalised():
    raw = np.zeros((20, 21))
    raw[8, 12] = 4.0
    raw[8, 13] = 4.0
    raw[9, 12] = 2.0
    psf = normalize_psf(raw)
    assert psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
    assert psf[psf.shape[0] // 2, psf.shape[1] // 2] == psf.max()
    assert abs(float(psf.sum()) - 1) < 1e-6
