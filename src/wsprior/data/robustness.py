"""Robustness cases: simulated acquisitions across microscopes, specimens, scales and borders.

Each task (``"deblur_dehaze"``, ``"tie"``, ``"idt"``) has ``CASES_PER_PART`` cases in a
*validation* part (for tuning automatic parameters) and as many in a *test* part (never tuned
on), with fixed seeds. ``case_specs(task, part)`` returns the cheap JSON-able descriptions;
``make_case(spec)`` simulates one: ``dict(spec, measurement=..., truth=..., params=...,
specimen=..., description=...)`` with ``params`` the keyword arguments of the public API call.

What is swept (stratified so that every level occurs in each part):

* objectives 10×/0.25 air … 100×/1.45 oil (``OBJECTIVES``; n_medium 1.0 / 1.33 / 1.515),
  λ 0.40–0.70 µm, pixel size 1–3× the Nyquist pixel ``λ/(4NA)`` (IDT 1–2×, see ``_idt_spec``);
* photons 50–20000 per pixel (at relative intensity 1: the specimen maximum for fluorescence,
  the brightfield for TIE and IDT), Poisson noise plus 1–3 e⁻ Gaussian read noise;
* deblur: haze correlation 0.5–10 µm, mean haze 0–1× the specimen maximum (std 0.3× the mean);
  TIE: Δz 0.5–5 µm (scaled to the depth of field), 2–7 planes incl. asymmetric stacks, coherent
  pupil NA/λ; IDT: LED rings at 0.5–1.0× the objective NA, 8–64 LEDs, 1–5 slices;
* input dtype/scale (``DTYPES``): relative float, float in [0, 1], uint8, full-range uint16,
  relative × 1e-3;
* specimens: the project's phantoms, real-image content and natural textures
  (``wsprior.data.specimens``); the validation and test parts use disjoint source images
  (``SOURCES_BY_PART``);
* borders: ``"cut"`` — the specimen fills a field 1.5 times the size (1.5N × 1.5N, a margin
  of N/4 on every side: wider than any PSF or propagation blur of the cases), the whole field is
  simulated (light from outside the final field reaches its border) and the centre N × N is
  kept: the realistic case; ``"periodic"`` — the specimen is made seamlessly periodic on the
  N × N field itself (``specimens.wrap_periodic``: a 1.25N region whose outer strips are
  cross-faded into the opposite border) and simulated with circular (FFT) convolution /
  propagation on exactly that field: nothing comes from outside. A mirror-symmetric field
  would be periodic too, but it is the one case a mirror-extending solver models exactly and
  whose flux through the border the data cannot reveal, so it is not used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import specimens
from .blur_haze import WidefieldAcquisition, simulate_widefield
from .idt import led_ring, permittivity_from_ri, simulate_idt_images, snap_illumination_na
from .tie import simulate_defocus_stack

TASKS = ("deblur_dehaze", "tie", "idt")
PARTS = ("validation", "test")
CASES_PER_PART = 20
FIELD = 256                      # quality cases are FIELD × FIELD pixels
SEED_BASE = {"deblur_dehaze": 7000, "tie": 7200, "idt": 7400}   # + 100 for the test part
DTYPES = ("float", "float01", "uint8", "uint16", "milli")
_DTYPE_MIX = ("float",) * 8 + ("float01",) * 3 + ("uint8",) * 3 + ("uint16",) * 4 + ("milli",) * 2
_SPECIMEN_MIX = ("phantom",) * 7 + ("real",) * 9 + ("texture",) * 4
_BORDER_MIX = ("cut",) * 15 + ("periodic",) * 5
SOURCES_BY_PART = {
    "validation": {"real": ("camera", "coins", "moon", "hubble_deep_field", "mri_s1045", "page"),
                   "texture": ("grass", "brick")},
    "test": {"real": ("retina", "microaneurysms", "horse", "astronaut", "grace_hopper", "text",
                      "celegans"),
             "texture": ("gravel",)},
}


def source_names(parts=PARTS) -> tuple[str, ...]:
    """The source images (real and texture) the given parts of the benchmark use."""
    return tuple(name for part in parts for group in SOURCES_BY_PART[part].values()
                 for name in group)


@dataclass(frozen=True)
class Objective:
    name: str
    na: float
    n_immersion: float


OBJECTIVES = (
    Objective("10×/0.25 air", 0.25, 1.0), Objective("20×/0.5 air", 0.5, 1.0),
    Objective("20×/0.75 air", 0.75, 1.0), Objective("40×/0.95 air", 0.95, 1.0),
    Objective("40×/1.15 water", 1.15, 1.33), Objective("60×/1.27 water", 1.27, 1.33),
    Objective("40×/1.3 oil", 1.3, 1.515), Objective("60×/1.4 oil", 1.4, 1.515),
    Objective("100×/1.45 oil", 1.45, 1.515),
)


# ----------------------------------------------------------------------------- specifications
def case_specs(task: str, part: str) -> list[dict]:
    """The ``CASES_PER_PART`` case descriptions of ``task`` in ``part`` (no arrays; fixed seeds)."""
    if task not in TASKS or part not in PARTS:
        raise ValueError(f"task must be one of {TASKS} and part one of {PARTS}")
    seed0 = SEED_BASE[task] + (100 if part == "test" else 0)
    mix = np.random.default_rng(seed0)           # stratified levels, shuffled per part
    objectives = mix.permutation(np.resize(np.arange(len(OBJECTIVES)), CASES_PER_PART))
    columns = dict(dtype=mix.permutation(_DTYPE_MIX), specimen=mix.permutation(_SPECIMEN_MIX),
                   border=mix.permutation(_BORDER_MIX))
    specs = []
    for k in range(CASES_PER_PART):
        rng = np.random.default_rng(seed0 + k)
        spec = _common_spec(task, part, seed0 + k, k, OBJECTIVES[objectives[k]], rng,
                            {name: str(values[k]) for name, values in columns.items()})
        specs.append(_TASK_SPEC[task](spec, rng))
    return specs


def all_specs(task: str, parts=PARTS) -> list[dict]:
    return [spec for part in parts for spec in case_specs(task, part)]


def _common_spec(task, part, seed, k, objective: Objective, rng, levels: dict) -> dict:
    sources = SOURCES_BY_PART[part]
    kind = levels["specimen"]
    source = "phantom" if kind == "phantom" else str(rng.choice(sources[kind]))
    return dict(id=f"{task}-{part[0]}{k:02d}", task=task, part=part, seed=int(seed),
                objective=objective.name, na=objective.na, n_medium=objective.n_immersion,
                wavelength_um=round(float(rng.uniform(0.40, 0.70)), 3),
                photons=round(float(np.exp(rng.uniform(np.log(50), np.log(20000)))), 1),
                read_noise_e=round(float(rng.uniform(1.0, 3.0)), 2),
                border=levels["border"], dtype=levels["dtype"], specimen_kind=kind, source=source)


def _pixel(spec: dict, rng, coarsest: float) -> dict:
    factor = round(float(rng.uniform(1.0, coarsest)), 2)
    nyquist = spec["wavelength_um"] / (4 * spec["na"])
    return dict(nyquist_factor=factor, pixel_size_um=round(nyquist * factor, 4))


def _deblur_spec(spec: dict, rng) -> dict:
    spec.update(_pixel(spec, rng, 3.0))
    amplitude = 0.0 if rng.uniform() < 0.15 else float(rng.uniform(0.05, 1.0))
    spec.update(haze_sigma_um=round(float(np.exp(rng.uniform(np.log(0.5), np.log(10)))), 2),
                haze_mean=round(amplitude, 3), haze_std=round(0.3 * amplitude, 3),
                background_percentile=float(rng.choice([0.0, 30.0, 60.0])))
    return spec


_Z_LAYOUTS = {"2 one-sided": (0, 1), "2 symmetric": (-0.5, 0.5), "3 symmetric": (-1, 0, 1),
              "3 asymmetric": (0, 1, 3), "4 asymmetric": (-1, 0, 1, 2),
              "5 symmetric": (-2, -1, 0, 1, 2), "7 symmetric": (-3, -2, -1, 0, 1, 2, 3)}


def _tie_spec(spec: dict, rng) -> dict:
    spec.update(_pixel(spec, rng, 3.0))
    depth_of_field = spec["wavelength_um"] * spec["n_medium"] / spec["na"] ** 2
    dz = float(np.clip(depth_of_field * np.exp(rng.uniform(np.log(0.3), np.log(3))), 0.5, 5.0))
    layout = str(rng.choice(list(_Z_LAYOUTS)))
    spec.update(dz_um=round(dz, 3), z_layout=layout,
                z_um=[round(dz * f, 4) for f in _Z_LAYOUTS[layout]],
                max_phase_rad=round(float(rng.uniform(0.5, 3.0)), 2),
                absorption=0.1 if rng.uniform() < 0.25 else 0.0,
                background_percentile=0.0)
    return spec


def _idt_spec(spec: dict, rng) -> dict:
    # Coarsest 2× Nyquist: beyond it the objective pupil NA/λ exceeds the grid's Nyquist
    # frequency and the Born field simulation on the camera grid is no longer physical.
    spec.update(_pixel(spec, rng, 2.0))
    n_leds, n_slices = _leds_and_slices(rng)
    axial = spec["wavelength_um"] / (spec["n_medium"] - np.sqrt(spec["n_medium"] ** 2 - spec["na"] ** 2))
    spacing = float(np.clip(0.5 * axial * rng.uniform(0.7, 1.5), 0.5, 3.0))
    k0 = 2 * np.pi / spec["wavelength_um"]
    max_dn = float(min(np.exp(rng.uniform(np.log(0.003), np.log(0.03))), 0.8 / (k0 * spacing)))
    spec.update(n_leds=n_leds, n_slices=n_slices,
                illumination_fraction=float(rng.choice([0.5, 0.7, 0.85, 1.0])),
                slice_thickness_um=round(spacing, 3),
                z_um=[round(spacing * (m - (n_slices - 1) / 2), 4) for m in range(n_slices)],
                max_delta_n=round(max_dn, 5))
    spec["background_percentile"] = float(rng.choice([20.0, 50.0]))
    return spec


def _leds_and_slices(rng) -> tuple[int, int]:
    """8–64 LEDs and 1–5 slices, keeping LEDs × (2 slices)² ≤ 1600 (the solver's cost)."""
    while True:
        n_leds = int(rng.choice([8, 12, 16, 24, 32, 48, 64]))
        n_slices = int(rng.integers(1, 6))
        if n_leds * (2 * n_slices) ** 2 <= 1600:
            return n_leds, n_slices


_TASK_SPEC = {"deblur_dehaze": _deblur_spec, "tie": _tie_spec, "idt": _idt_spec}


# ----------------------------------------------------------------------------- simulation
def make_case(spec: dict, deblur_n_medium: bool = False) -> dict:
    """Simulate the case ``spec``: adds ``measurement``, ``truth``, ``params`` (API keywords),
    ``specimen`` (its source and crop) and ``description``. ``deblur_n_medium``: also pass
    ``n_medium`` to ``deblur_dehaze`` (for API versions that take it)."""
    rng = np.random.default_rng(spec["seed"] + 1_000_003)
    measurement, truth, params, record = _SIMULATE[spec["task"]](spec, rng)
    if spec["task"] == "deblur_dehaze" and deblur_n_medium:
        params["n_medium"] = spec["n_medium"]
    case = dict(spec, measurement=_to_dtype(measurement, spec["dtype"]), truth=truth,
                params=params, specimen=record)
    case["description"] = describe(case)
    return case


def _simulation_shape(spec: dict) -> tuple[int, int]:
    """The field the specimen is made on: 1.5N (cut) or 1.25N, wrapped to N (periodic)."""
    n = 3 * FIELD // 2 if spec["border"] == "cut" else 5 * FIELD // 4
    return n, n


def _content(spec: dict, shape, rng, zoom=None) -> tuple[np.ndarray, dict]:
    """Grey content in [0, 1] of the case's source image (not for phantoms), with its record."""
    return specimens.crop_source(spec["source"], shape, rng, zoom=zoom)


def _periodic(image: np.ndarray, spec: dict) -> np.ndarray:
    return specimens.wrap_periodic(image, FIELD) if spec["border"] == "periodic" else image


def _simulate_deblur(spec: dict, rng):
    shape = _simulation_shape(spec)
    obj, record = _fluorescence(spec, shape, rng)
    obj = _periodic(obj, spec)
    acq = WidefieldAcquisition(na=spec["na"], wavelength_um=spec["wavelength_um"],
                               pixel_size_um=spec["pixel_size_um"], haze_sigma_um=spec["haze_sigma_um"],
                               haze_mean=spec["haze_mean"], haze_std=spec["haze_std"],
                               photons=spec["photons"], read_noise_photons=spec["read_noise_e"])
    margin = (obj.shape[0] - FIELD) // 2
    measurement, truth = simulate_widefield(obj, acq, rng, margin,
                                            periodic=spec["border"] == "periodic")
    params = dict(na=spec["na"], wavelength_um=spec["wavelength_um"],
                  pixel_size_um=spec["pixel_size_um"])
    return measurement, truth, params, record


def _fluorescence(spec: dict, shape, rng) -> tuple[np.ndarray, dict]:
    if spec["specimen_kind"] == "phantom":
        return (specimens.phantom_fluorescence(shape, spec["pixel_size_um"], rng),
                dict(source="phantom", generator="fluorescence_phantom", seed=spec["seed"]))
    grey, record = _content(spec, shape, rng)
    invert = specimens.SOURCES[spec["source"]].invert
    return specimens.fluorescence_density(grey, spec["background_percentile"], invert), record


def _simulate_tie(spec: dict, rng):
    shape = _simulation_shape(spec)
    if spec["specimen_kind"] == "phantom":
        phase = specimens.phantom_phase(shape, spec["pixel_size_um"], rng, spec["max_phase_rad"])
        grey = phase / max(float(phase.max()), 1e-12)
        record = dict(source="phantom", generator="phase_phantom", seed=spec["seed"])
    else:
        grey, record = _content(spec, shape, rng)
        phase = specimens.phase_map(grey, spec["max_phase_rad"])
    phase, grey = _periodic(phase, spec), _periodic(grey, spec)
    amplitude = np.sqrt(1 - spec["absorption"] * grey) if spec["absorption"] else None
    optics = dict(wavelength_um=spec["wavelength_um"], pixel_size_um=spec["pixel_size_um"],
                  n_medium=spec["n_medium"])
    stack = simulate_defocus_stack(phase, spec["z_um"], amplitude=amplitude, na=spec["na"],
                                   pad=spec["border"] == "cut", **optics)
    stack, phase = _centre(stack), _centre(phase)
    measurement = _camera(stack, spec, rng)
    return measurement, phase.astype(np.float32), dict(optics, z_um=list(spec["z_um"])), record


def _simulate_idt(spec: dict, rng):
    shape = _simulation_shape(spec)
    field = (FIELD, FIELD) if spec["border"] == "periodic" else shape
    delta_n, kappa, record = _idt_volume(spec, shape, rng)
    delta_n, kappa = _periodic(delta_n, spec), _periodic(kappa, spec)
    optics = dict(wavelength_um=spec["wavelength_um"], na=spec["na"],
                  pixel_size_um=spec["pixel_size_um"], n_medium=spec["n_medium"],
                  z_um=list(spec["z_um"]), slice_thickness_um=spec["slice_thickness_um"])
    ring = led_ring(spec["n_leds"], spec["illumination_fraction"] * spec["na"],
                    start_angle=float(rng.uniform(0, 2 * np.pi)))
    leds = snap_illumination_na(ring, field, spec["pixel_size_um"], spec["wavelength_um"],
                                max_na=spec["na"])
    eps = permittivity_from_ri(delta_n, kappa, spec["n_medium"])
    images = simulate_idt_images(eps, illumination_na=leds, **optics)
    measurement = _camera(_centre(images), spec, rng)
    params = dict(optics, illumination_na=leds.tolist())
    return measurement, _centre(delta_n).astype(np.float32), params, record


def _idt_volume(spec: dict, shape, rng):
    """Δn, κ ``(M, Y, X)``: the IDT phantom, or one crop of the source image made into an
    axially continuous object — each slice the crop shifted by ``m × shift`` (a tilted object,
    |shift| ≤ 3 px per slice) and weighted by an envelope falling to 0.7 at the outer slices;
    κ = 0.1 Δn."""
    m = spec["n_slices"]
    if spec["specimen_kind"] == "phantom":
        delta_n, kappa = specimens.phantom_delta_n(m, shape, spec["pixel_size_um"], rng,
                                                   spec["max_delta_n"])
        return delta_n, kappa, dict(source="phantom", generator="volume_phantom", seed=spec["seed"])
    # Source pixels at most halved in size: keeps the fine detail IDT transfers (periods of a
    # few µm and below) instead of magnifying the image into slowly varying Δn.
    grey, record = _content(spec, shape, rng, zoom=(0.5, 1.0))
    shift = rng.uniform(-3.0, 3.0, 2)
    offsets = np.arange(m) - (m - 1) / 2
    greys = [ndimage.shift(grey, o * shift, order=1, mode="nearest") for o in offsets]
    envelope = 1 - 0.3 * np.abs(offsets) / max((m - 1) / 2, 1)
    delta_n = specimens.delta_n_slices(greys, spec["max_delta_n"], spec["background_percentile"])
    delta_n = (delta_n * envelope[:, None, None]).astype(np.float32)
    record["slice_shift_px"] = [round(float(v), 3) for v in shift]
    return delta_n, 0.1 * delta_n, record


def _centre(array: np.ndarray) -> np.ndarray:
    """The central FIELD × FIELD window of the trailing two axes."""
    ny, nx = array.shape[-2:]
    y0, x0 = (ny - FIELD) // 2, (nx - FIELD) // 2
    return np.ascontiguousarray(array[..., y0:y0 + FIELD, x0:x0 + FIELD])


def _camera(intensity: np.ndarray, spec: dict, rng) -> np.ndarray:
    """Poisson photon noise at ``photons`` per unit intensity plus Gaussian read noise,
    returned in relative units (counts / photons), float32."""
    photons = spec["photons"]
    counts = rng.poisson(np.clip(intensity, 0, None) * photons)
    counts = counts + rng.normal(0, spec["read_noise_e"], intensity.shape)
    return (counts / photons).astype(np.float32)


def _to_dtype(measurement: np.ndarray, dtype: str) -> np.ndarray:
    """The measurement as the case's input: ``"float"`` relative units, ``"float01"`` scaled to
    [0, 1], ``"uint8"``/``"uint16"`` scaled to the full range and rounded, ``"milli"`` × 1e-3."""
    if dtype == "float":
        return measurement.astype(np.float32)
    if dtype == "milli":
        return (measurement * 1e-3).astype(np.float32)
    positive = np.clip(measurement, 0, None)
    top = max(float(positive.max()), 1e-12)
    if dtype == "float01":
        return (positive / top).astype(np.float32)
    full = {"uint8": 255, "uint16": 65535}[dtype]
    return np.round(positive / top * full).astype(dtype)


_SIMULATE = {"deblur_dehaze": _simulate_deblur, "tie": _simulate_tie, "idt": _simulate_idt}


def describe(case: dict) -> str:
    """One line stating the acquisition, the specimen and its crop."""
    parts = [case["objective"], f"n {case['n_medium']}", f"λ {case['wavelength_um']} µm",
             f"px {case['pixel_size_um']:.3g} µm ({case['nyquist_factor']}× Nyquist)",
             f"{case['photons']:g} ph/px + {case['read_noise_e']} e⁻"]
    if case["task"] == "deblur_dehaze":
        parts.append(f"haze σ {case['haze_sigma_um']} µm mean {case['haze_mean']}")
    elif case["task"] == "tie":
        parts.append(f"z {case['z_um']} µm ({case['z_layout']}), φmax {case['max_phase_rad']} rad"
                     + (", absorbing" if case["absorption"] else ""))
    else:
        parts.append(f"{case['n_leds']} LEDs at {case['illumination_fraction']}×NA, "
                     f"{case['n_slices']} slice(s) of {case['slice_thickness_um']} µm, "
                     f"Δn ≤ {case['max_delta_n']}")
    record = case.get("specimen", {})
    crop = record.get("crop_yxhw")
    specimen = case["source"] + (f" crop {crop}" if crop is not None else "")
    parts += [f"{case['border']} border", case["dtype"], specimen]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- extra cases
def pollen_case() -> dict:
    """The separate real-blur deconvolution case (sdeconv's pollen, vendored): the central slice
    of a 3D-blurred, Poisson-noisy stack, its ground truth and the in-focus PSF slice. The slice
    holds its neighbours' out-of-focus light (the 2D model's haze). Not one of the 40 cases,
    never used for tuning. The pixel size is not given by the source: a nominal 0.1 µm sets the
    units of ``haze_sigma_um`` only (the PSF is given as an array)."""
    import tifffile

    folder = specimens.VENDORED_DIR
    psf = tifffile.imread(folder / "pollen_psf_z16.tif").astype(np.float32)
    return dict(id="pollen-z16", task="deblur_dehaze", part="separate",
                measurement=tifffile.imread(folder / "pollen_blurred_z16.tif").astype(np.float32),
                truth=tifffile.imread(folder / "pollen_truth_z16.tif").astype(np.float32),
                params=dict(psf=psf / psf.sum(), pixel_size_um=0.1),
                specimen=dict(source="sdeconv pollen", file="benchmarks/data/pollen_*_z16.tif"),
                description="sdeconv pollen, central slice of a 3D-blurred stack (real 3D PSF, "
                            "Poisson noise), in-focus PSF slice given")


def tiling_scene(size: int, seed: int, pixel_size_um: float = 0.1, na: float = 0.8,
                 wavelength_um: float = 0.52) -> tuple[np.ndarray, dict]:
    """A widefield plane ``size × size`` for the tiling check: blocks of different validation-part
    sources (each a random crop, random density threshold), phantoms and textures placed at
    random overlapping positions (no periodic repetition), simulated as a field cut from a
    larger scene (margin 64 px) with haze and noise. Returns ``(image float32, API params)``."""
    rng = np.random.default_rng(seed)
    margin = 64
    obj = _mosaic(size + 2 * margin, pixel_size_um, rng)
    acq = WidefieldAcquisition(na=na, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                               haze_sigma_um=2.0, haze_mean=0.2, haze_std=0.06, photons=1000.0)
    image, _ = simulate_widefield(obj, acq, rng, margin)
    return image, dict(na=na, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um)


def _mosaic(size: int, pixel_size_um: float, rng, block: int = 384) -> np.ndarray:
    """Overlapping blocks of specimen content (max-composited) covering a ``size²`` field."""
    canvas = np.zeros((size, size), np.float32)
    names = source_names(("validation",))
    count = int(np.ceil(size / block * 1.5)) ** 2
    for _ in range(count):
        y, x = rng.integers(-block // 2, size - block // 2, 2)
        if rng.uniform() < 0.3:
            content = specimens.phantom_fluorescence((block, block), pixel_size_um, rng)
        else:
            grey, _ = specimens.crop_source(str(rng.choice(names)), (block, block), rng)
            content = specimens.fluorescence_density(grey, float(rng.choice([0, 40, 70])))
        window = (slice(max(y, 0), min(y + block, size)), slice(max(x, 0), min(x + block, size)))
        part = content[max(-y, 0):, max(-x, 0):][: window[0].stop - window[0].start,
                                                 : window[1].stop - window[1].start]
        canvas[window] = np.maximum(canvas[window], part * rng.uniform(0.4, 1.0))
    return canvas

