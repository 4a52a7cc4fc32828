"""Structured-noise operator K: unit variance, the specified spectrum, white limit, symmetry."""
import numpy as np
import torch

from wsprior.data.blur_haze import gaussian_haze
from wsprior.noise import StructuredNoise


def _periodogram(samples: torch.Tensor) -> torch.Tensor:
    n = samples.shape[-1] * samples.shape[-2]
    return (torch.fft.fft2(samples).abs() ** 2 / n).mean(0)


def test_samples_have_unit_variance_and_the_specified_spectrum():
    noise = StructuredNoise((3.0, 6.0), white_mix=0.1)
    samples = noise.sample((400, 64, 64), generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    assert abs(float(samples.var()) - 1) < 0.05
    expected = noise.power_spectrum((64, 64), dtype=torch.float64)
    measured = _periodogram(samples)
    strong = expected > 0.2 * expected.max()
    ratio = (measured[strong] / expected[strong]).mean()
    assert abs(float(ratio) - 1) < 0.05
    # anisotropy: wider along x → less power at high u_x than at high u_y
    assert expected[0, 6] < expected[6, 0]


def test_spectrum_matches_an_independent_gaussian_filter_field(rng):
    sigma_px = 4.0
    fields = np.stack([gaussian_haze((64, 64), sigma_px, 1.0, rng) for _ in range(300)])
    measured = _periodogram(torch.from_numpy(fields))
    expected = StructuredNoise(sigma_px).power_spectrum((64, 64), dtype=torch.float64)
    band = (expected > 0.05 * expected.max())
    band[0, 0] = False  # the simulation removes each field's mean
    np.testing.assert_allclose(measured[band].numpy(), expected[band].numpy(), rtol=0.25)


def test_zero_width_is_white_and_operator_is_symmetric():
    white = StructuredNoise(0.0)
    np.testing.assert_allclose(white.power_spectrum((16, 16)).numpy(), 1.0, rtol=1e-6)
    noise = StructuredNoise(2.5, white_mix=0.3)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(32, 32, dtype=torch.float64, generator=gen)
    b = torch.randn(32, 32, dtype=torch.float64, generator=gen)
    assert abs(float((noise.apply(a) * b).sum() - (a * noise.apply(b)).sum())) < 1e-9
