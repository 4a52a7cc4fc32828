"""Classical deblur + dehaze on independently simulated widefield data: does it *deblur*?

PSNR over the raw input mostly measures haze and offset removal: removing the haze with a
30-px Gaussian high-pass and no deconvolution at all (``haze_only_highpass``) gains +3 to +6 dB
over the offset-corrected input on these images, as much as Wiener. The deblurring bars are
therefore on the error in a band of spatial frequencies above half the OTF cut-off 2NA/λ
(``band_error``), which haze removal cannot change, and the haze-only baseline must fail them.
"""
import numpy as np
import pytest
import torch
from scipy import ndimage

from wsprior import metrics
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.physics.blur_haze import make_psf
from wsprior.solvers.classical.deconvolution import richardson_lucy, wiener_deblur

SEEDS = (5, 6, 7)
HAZE_HIGHPASS_PX = 30


def haze_only_highpass(image: np.ndarray, sigma_px: float = HAZE_HIGHPASS_PX) -> np.ndarray:
    """The baseline a deblur test must fail: subtract a 30-px Gaussian low-pass (the haze) and
    the 1st percentile (the offset). No deconvolution: nothing above a few cycles per field
    changes."""
    image = np.asarray(image, dtype=np.float64)
    highpass = image - ndimage.gaussian_filter(image, sigma_px, mode="reflect")
    return (highpass - np.percentile(highpass, 1)).astype(np.float32)


def band_error(truth, estimate, *, na: float, wavelength_um: float, pixel_size_um: float,
               band: tuple[float, float] = (0.5, 0.75)) -> float:
    """Relative error of ``estimate`` in the spatial-frequency band ``band`` × the incoherent
    OTF cut-off 2NA/λ: ‖B(x̂ − x)‖ / ‖B(x − x̄)‖, both Hann-windowed (no border leakage). 0:
    perfect; about 1 − OTF for the blurred image itself; haze and offsets do not enter."""
    truth, estimate = np.asarray(truth, np.float64), np.asarray(estimate, np.float64)
    ny, nx = truth.shape[-2:]
    window = np.outer(np.hanning(ny), np.hanning(nx))
    u = np.hypot(*np.meshgrid(np.fft.fftfreq(ny, pixel_size_um),
                              np.fft.fftfreq(nx, pixel_size_um), indexing="ij"))
    cutoff = 2 * na / wavelength_um
    inside = (u >= band[0] * cutoff) & (u <= band[1] * cutoff)
    error = np.fft.fft2((estimate - truth) * window)[inside]
    signal = np.fft.fft2((truth - truth.mean()) * window)[inside]
    return float(np.linalg.norm(error) / np.linalg.norm(signal))


#: Bands (× the OTF cut-off) where each regime's data still hold the detail: at 2000 photons
#: the half above half the cut-off; at 300 photons noise swamps it (Wiener's error there is
#: 0.98-1.04× the raw image's, correctly: it must not amplify noise), so the band below.
BANDS = {"normal": (0.5, 0.75), "low-light": (0.25, 0.5)}
#: A deblurred image's band error must be below this fraction of the raw input's (the
#: haze-only baseline's is 1.0 by construction). Measured: normal Wiener 0.69-0.71, RL
#: 0.70-0.71; low light Wiener 0.65-0.72, RL 0.57-0.66 (band ¼-½).
BAND_FRACTION = 0.8


@pytest.fixture(scope="module", params=[2000, 300], ids=["normal", "low-light"])
def widefield(request):
    acq = WidefieldAcquisition(photons=request.param)
    psf = make_psf(na=acq.na, wavelength_um=acq.wavelength_um, pixel_size_um=acq.pixel_size_um)
    regime = "normal" if request.param == 2000 else "low-light"
    optics = dict(na=acq.na, wavelength_um=acq.wavelength_um, pixel_size_um=acq.pixel_size_um,
                  band=BANDS[regime])
    cases = []
    for seed in SEEDS:
        measurement, truth = simulate_deblur_dehaze_pair((192, 192), acq, seed=seed)
        cases.append((torch.from_numpy(measurement), truth))
    return cases, psf, optics


def _band_ratios(cases, optics, solve) -> np.ndarray:
    """Each image's band error of ``solve(y)`` over the raw input's."""
    return np.array([band_error(truth, solve(y), **optics) / band_error(truth, y.numpy(), **optics)
                     for y, truth in cases])


def _psnr_gains(cases, solve) -> np.ndarray:
    """PSNR gain (dB) of ``solve(y)`` over the offset-corrected input."""
    return np.array([metrics.psnr(truth, solve(y)) - metrics.psnr(truth, y.numpy()
                                                                   - np.percentile(y.numpy(), 1))
                     for y, truth in cases])


def test_wiener_restores_the_band_above_half_the_cutoff(widefield):
    cases, psf, optics = widefield
    ratios = _band_ratios(cases, optics, lambda y: wiener_deblur(y, psf, pixel_size_um=0.1).numpy())
    assert ratios.max() < BAND_FRACTION, ratios
    assert wiener_deblur(cases[0][0], psf, pixel_size_um=0.1).min() >= 0


def test_richardson_lucy_restores_the_band_above_half_the_cutoff(widefield):
    cases, psf, optics = widefield
    ratios = _band_ratios(cases, optics, lambda y: richardson_lucy(
        y, psf, pixel_size_um=0.1, iterations=15).numpy())
    assert ratios.max() < BAND_FRACTION, ratios


def test_haze_only_highpass_fails_the_deblur_bar_it_would_pass_in_psnr(widefield):
    """The baseline gains as much PSNR over the offset-corrected input as the deconvolutions
    (measured +2.9 to +5.9 dB; the old bar was ≥ 1 dB each, ≥ 2.5 dB on average) but leaves
    the band untouched (ratio 1.00 against the bar 0.8)."""
    cases, _, optics = widefield
    gains = _psnr_gains(cases, lambda y: haze_only_highpass(y.numpy()))
    assert gains.min() > 1.0 and gains.mean() > 2.5   # what PSNR alone would have accepted
    ratios = _band_ratios(cases, optics, lambda y: haze_only_highpass(y.numpy()))
    assert ratios.min() > BAND_FRACTION and np.allclose(ratios, 1.0, atol=0.02), ratios


def test_richardson_lucy_reports_progress(widefield):
    cases, psf, _ = widefield
    steps = []
    richardson_lucy(cases[0][0], psf, pixel_size_um=0.1, iterations=4,
                    progress=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_haze_term_of_the_noise_spectrum_is_what_removes_haze(widefield):
    """With the haze's level and width given (0.08, 3 µm: the simulation's), the Wiener filter
    removes it: ≥ 2 dB over the same solver without the haze term (haze_std=0), measured
    +4 to +7 dB. (The automatic fit finds little haze on these phantoms: their own spectrum
    flattens where the haze sits, so it cannot tell the two apart and removes less.)"""
    cases, psf, _ = widefield
    known = _psnr_gains(cases, lambda y: wiener_deblur(y, psf, pixel_size_um=0.1, haze_std=0.08,
                                                       haze_sigma_um=3.0).numpy())
    plain = _psnr_gains(cases, lambda y: wiener_deblur(y, psf, pixel_size_um=0.1,
                                                       haze_std=0.0).numpy())
    assert known.mean() > plain.mean() + 2.0
