"""The bundled sample datasets: how they are made, and where they live.

``python -m wsprior.data.samples sample_data`` regenerates them (deterministic seeds). Each
dataset is ``NAME.tif`` (the measurement), ``NAME.yaml`` (its acquisition parameters with the
API's names, usable as ``--config``) and ``NAME_truth.tif`` (the ground truth).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np

from .. import io
from .blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from .idt import led_ring, permittivity_from_ri, simulate_idt_images, snap_illumination_na, volume_phantom
from .tie import phase_phantom, simulate_defocus_stack

DEBLUR = WidefieldAcquisition(na=0.8, wavelength_um=0.52, pixel_size_um=0.1, photons=2000)
TIE = dict(z_um=[-2.0, 0.0, 2.0], wavelength_um=0.53, pixel_size_um=0.2, n_medium=1.33)
TIE_NOISE = 0.01
IDT = dict(wavelength_um=0.53, na=0.4, pixel_size_um=0.25, n_medium=1.33,
           z_um=[-2.0, 0.0, 2.0], slice_thickness_um=2.0)
IDT_LEDS, IDT_PHOTONS = 16, 2000
IDT_MAX_DELTA_N = 0.01  # weakly scattering cells: the first-Born regime the model assumes
SAMPLE_NAMES = ("deblur_dehaze", "tie", "idt")


def sample_dir() -> Path:
    """Folder of the installed sample data (inside the package)."""
    return Path(str(resources.files("wsprior.sample_data")))


def load_sample(name: str) -> tuple[np.ndarray, dict, np.ndarray]:
    """``(measurement, parameters, ground truth)`` of a bundled dataset."""
    if name not in SAMPLE_NAMES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLE_NAMES)}; got {name!r}")
    folder = sample_dir()
    return (io.read_image(folder / f"{name}.tif"), io.read_parameters(folder / f"{name}.yaml"),
            io.read_image(folder / f"{name}_truth.tif"))


def make_deblur_dehaze(folder: Path, seed: int = 11) -> None:
    measurement, truth = simulate_deblur_dehaze_pair((512, 512), DEBLUR, seed)
    params = dict(na=DEBLUR.na, wavelength_um=DEBLUR.wavelength_um,
                  pixel_size_um=DEBLUR.pixel_size_um, haze_sigma_um=DEBLUR.haze_sigma_um)
    _write(folder, "deblur_dehaze", measurement, params, truth, DEBLUR.pixel_size_um,
           simulation=asdict(DEBLUR))


def make_tie(folder: Path, seed: int = 12) -> None:
    rng = np.random.default_rng(seed)
    phase = phase_phantom((384, 384), TIE["pixel_size_um"], rng, max_phase_rad=2.0)
    stack = simulate_defocus_stack(phase, TIE["z_um"], wavelength_um=TIE["wavelength_um"],
                                   pixel_size_um=TIE["pixel_size_um"], n_medium=TIE["n_medium"],
                                   noise_std=TIE_NOISE, rng=rng)
    _write(folder, "tie", stack, dict(TIE), phase, TIE["pixel_size_um"],
           simulation={"relative_noise": TIE_NOISE})


def make_idt(folder: Path, seed: int = 13) -> None:
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    leds = snap_illumination_na(led_ring(IDT_LEDS, IDT["na"]), shape, IDT["pixel_size_um"],
                                IDT["wavelength_um"], max_na=IDT["na"])
    delta_n, kappa = volume_phantom(len(IDT["z_um"]), shape, IDT["pixel_size_um"], rng,
                                    max_delta_n=IDT_MAX_DELTA_N)
    eps = permittivity_from_ri(delta_n, kappa, IDT["n_medium"])
    images = simulate_idt_images(eps, illumination_na=leds, photons=IDT_PHOTONS, rng=rng, **IDT)
    counts = np.clip(np.round(images * IDT_PHOTONS), 0, 65535).astype(np.uint16)
    params = dict(IDT, illumination_na=leds.round(6).tolist())
    _write(folder, "idt", counts, params, delta_n, IDT["pixel_size_um"],
           simulation={"photons_per_pixel": IDT_PHOTONS, "truth": "delta_n = n - n_medium"})


def _write(folder: Path, name: str, measurement, params, truth, pixel_size_um, simulation) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    io.write_image(folder / f"{name}.tif", measurement, pixel_size_um=pixel_size_um)
    io.write_image(folder / f"{name}_truth.tif", truth.astype(np.float32), pixel_size_um=pixel_size_um)
    io.write_parameters(folder / f"{name}.yaml", params)
    io.write_parameters(folder / f"{name}_simulation.yaml", simulation)


def make_all(folder: Path) -> None:
    make_deblur_dehaze(folder)
    make_tie(folder)
    make_idt(folder)


if __name__ == "__main__":
    make_all(Path(sys.argv[1] if len(sys.argv) > 1 else "sample_data"))
