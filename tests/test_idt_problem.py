"""The samplers' IDT problem (``wsprior.solvers.problems.IdtProblem``): its fast data step and
residual against the plain formulas they replace, and its reuse of the classical solution."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wsprior.data.idt import led_ring, permittivity_from_ri, simulate_idt_images, volume_phantom
from wsprior.solvers.classical.idt import idt_tikhonov
from wsprior.solvers.problems import idt_problem

OPTICS = dict(wavelength_um=0.53, na=0.4, pixel_size_um=0.3, n_medium=1.33, z_um=[-1.0, 1.0],
              slice_thickness_um=2.0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    rng = np.random.default_rng(7)
    delta_n, kappa = volume_phantom(2, (64, 64), OPTICS["pixel_size_um"], rng, max_delta_n=0.01)
    eps = permittivity_from_ri(delta_n, kappa, OPTICS["n_medium"])
    raw = simulate_idt_images(eps, illumination_na=led_ring(8, 0.35), photons=2000, rng=rng,
                              **OPTICS)
    return torch.from_numpy(raw)


@pytest.fixture(scope="module")
def problem(images):
    return idt_problem(images, illumination_na=led_ring(8, 0.35), **OPTICS)


def _double(problem):
    """The same problem in double precision: the reference for the float32 shortcuts."""
    return dataclasses.replace(
        problem, transfer=problem.transfer.to(torch.complex128),
        data_spectrum=problem.data_spectrum.to(torch.complex128),
        normal=problem.normal.to(torch.complex128), classical=problem.classical.double(),
        classical_imag=problem.classical_imag.double())


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("guidance", [1.0, 0.3])
def test_reduced_data_step_equals_the_joint_re_im_solve(problem, guidance):
    """``proximal`` (Im Δε eliminated once, a diagonal rescaling per step) = the 2M × 2M solve
    of ``solve`` in double precision, over the precisions a warm-started WS run uses (noise
    σ/α from 3 down to 0.05 in prior units)."""
    reference = _double(problem)
    x0 = problem.classical + 0.3 * problem.scale * torch.randn(
        problem.classical.shape, generator=torch.Generator().manual_seed(0))
    for noise_level in (3.0, 0.5, 0.05):
        precision = 1.0 / (problem.scale * noise_level) ** 2
        fast = problem.proximal(x0, precision, guidance)
        exact = reference.solve(x0.double(), precision, guidance)[0]
        assert _relative(fast, exact) < 1e-4
    # a precision spectrum (structured prior error) of constant value is the scalar precision
    spectrum = torch.full(problem.padded_shape, precision)
    assert _relative(problem.proximal(x0, spectrum, guidance), fast) < 1e-6


def test_reduced_data_step_keeps_the_anchor_when_the_prior_dominates(problem):
    anchor = problem.classical.flip(-1)
    assert _relative(problem.proximal(anchor, 1e14), anchor) < 1e-6


def test_residual_from_normal_equations_equals_applying_the_operator(problem):
    """``residual_norm`` (‖ĝ‖² − 2 Re x̂ᴴHᴴĝ + x̂ᴴNx̂) = ``2 misfit / count`` (H applied to every
    LED image) for estimates near and far from the data."""
    for x in (problem.classical, torch.zeros_like(problem.classical), 2 * problem.classical):
        applied = float(2 * _double(problem).misfit(x.double()) / problem.data_spectrum.numel())
        assert problem.residual_norm(x) == pytest.approx(applied, rel=1e-5)
    assert problem.residual_norm(problem.classical) < problem.residual_norm(
        torch.zeros_like(problem.classical))


def test_sampler_problem_starts_from_the_classical_tikhonov_solution(images, problem):
    """The problem reuses the automatic Tikhonov solve (its transfer, normal matrices, weight)
    instead of repeating it: its classical estimate is ``idt_tikhonov``'s output."""
    eps, weight = idt_tikhonov(images, illumination_na=led_ring(8, 0.35), **OPTICS,
                               return_regularization=True)
    assert torch.allclose(problem.classical, eps.real, atol=1e-7)
    assert torch.allclose(problem.classical_imag, eps.imag, atol=1e-7)
    scale = float(problem.transfer.abs().square().sum((0, 1)).max()) / problem.transfer.shape[1]
    assert problem.mu == pytest.approx(weight * scale, rel=1e-6)
