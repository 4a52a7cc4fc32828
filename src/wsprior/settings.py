"""Parameter models shared by the API, the CLI (``--config params.yaml``) and the napari widgets.

Field names carry their units; ranges are the physically meaningful ones, so a wrong unit
(a wavelength in nm, say) is caught with a message naming the parameter and the range.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Auto = Literal["auto"]
DEBLUR_METHODS = ("ws", "dps", "score_ald", "ddnm", "joint", "tikhonov", "wiener", "rl")
TIE_METHODS = ("ws", "dps", "score_ald", "ddnm", "tikhonov")
IDT_METHODS = ("ws", "dps", "score_ald", "ddnm", "tikhonov")
DIFFUSION_METHODS = ("ws", "dps", "score_ald", "ddnm", "joint")
#: Samplers built on the DDIM update, whose fresh noise per step ``stochasticity`` sets.
STOCHASTICITY_METHODS = ("ws", "ddnm", "joint")
WAVELENGTH_RANGE_UM = (0.2, 2.0)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SolverSettings(_Settings):
    """Keywords common to every reconstruction (DESIGN.md §4)."""
    task: ClassVar[str | None] = None      # "deblur_dehaze", "tie", "idt" in the subclasses
    #: Trailing axes of one measurement: a plane (Y, X) or a stack (planes or LEDs, Y, X).
    image_axes: ClassVar[int] = 2
    prior: str = "default"
    steps: int | None = Field(None, ge=1, le=1000, description="sampler steps per sample "
                              "(network evaluations); None: 5 for ws (6 for IDT), 12 for the others")
    guidance: Union[Auto, float] = Field("auto", description="data-consistency weight λ, or 'auto'")
    n_samples: int | None = Field(None, ge=1, le=256, description="posterior samples, "
                                  "averaged into the result (the posterior mean); None: 2 for "
                                  "ws (2 × 5 steps, IDT 2 × 6), 4 for the others (4 × 12 steps)")
    start_from_noise: bool = Field(False, description="diffusion samplers: start from structured "
                                   "noise at t = 1 instead of the classical solution diffused "
                                   "to t = 0.5 (more steps needed)")
    stochasticity: Union[Auto, float] = Field(
        "auto", description="fresh noise per step of the ws, ddnm and joint samplers: 0 = "
        "deterministic (probability flow), 1 = ancestral; 'auto' = 0.85")
    return_std: bool = False
    seed: int = 0
    device: str = "auto"
    tile_size: int | None = Field(None, ge=32, le=65536, description="tile edge in pixels")
    regularization: Union[Auto, float] = Field("auto", description="classical solver weight")

    @field_validator("guidance", "regularization")
    @classmethod
    def _positive_or_auto(cls, value):
        if value != "auto" and not value > 0:
            raise ValueError("must be 'auto' or a number > 0")
        return value

    @field_validator("stochasticity")
    @classmethod
    def _fraction_or_auto(cls, value):
        if value != "auto" and not 0 <= value <= 1:
            raise ValueError("must be 'auto' or a number in [0, 1]")
        return value

    @model_validator(mode="after")
    def _stochasticity_needs_a_ddim_sampler(self):
        method = getattr(self, "method", None)
        if self.stochasticity != "auto" and method not in STOCHASTICITY_METHODS:
            raise ValueError(f"stochasticity applies to method {', '.join(STOCHASTICITY_METHODS)}"
                             f" only; method={method!r} (dps is deterministic, score_ald is "
                             "Langevin sampling, the classical solvers sample nothing)")
        return self

    @model_validator(mode="after")
    def _std_needs_a_sampler(self):
        method = getattr(self, "method", None)
        if self.return_std and method not in DIFFUSION_METHODS:
            raise ValueError(f"return_std=True needs a diffusion method ({', '.join(DIFFUSION_METHODS)}); "
                             f"method={method!r} gives no uncertainty")
        return self

    @field_validator("device")
    @classmethod
    def _device_name(cls, value):
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError("must be 'auto', 'cpu' or 'cuda[:N]'")
        return value


class DeblurDehazeSettings(SolverSettings):
    task: ClassVar[str] = "deblur_dehaze"
    method: Literal[DEBLUR_METHODS] = "ws"
    na: float | None = Field(None, gt=0, le=1.7, description="objective NA")
    wavelength_um: float | None = Field(None, ge=WAVELENGTH_RANGE_UM[0], le=WAVELENGTH_RANGE_UM[1],
                                        description="emission wavelength (µm)")
    pixel_size_um: float | None = Field(None, gt=0, le=100, description="sample-plane pixel (µm)")
    n_medium: float | None = Field(None, ge=1.0, le=2.0, description="refractive index of the "
                                   "immersion medium (1.0 air, 1.33 water, 1.515 oil); None: "
                                   "the objective's NA decides (air below NA 1)")
    haze_sigma_um: Union[Auto, float] = Field(
        "auto", description="haze correlation width (µm); 'auto': fitted to the image")
    haze_std: Union[Auto, float] = Field("auto", description="haze standard deviation (image units)")
    background: Union[Auto, float] = Field("auto", description="constant offset (image units)")
    iterations: Union[Auto, int] = Field(
        "auto", description="Richardson–Lucy iterations; 'auto': until the data misfit reaches "
        "the noise level (at most 100)")


    @field_validator("haze_sigma_um")
    @classmethod
    def _width_or_auto(cls, value):
        if value != "auto" and not 0 < value <= 1000:
            raise ValueError("must be 'auto' or a width in (0, 1000] µm")
        return value

    @field_validator("iterations")
    @classmethod
    def _iterations_or_auto(cls, value):
        if value != "auto" and not 1 <= value <= 10000:
            raise ValueError("must be 'auto' or a whole number of iterations in [1, 10000]")
        return value

    @model_validator(mode="after")
    def _aperture_below_medium_index(self):
        if self.na is not None and self.n_medium is not None and self.na >= self.n_medium:
            raise ValueError(f"na must lie in (0, n_medium={self.n_medium:g}) (an objective's NA "
                             f"is below the index of its immersion medium); got {self.na:g}")
        if self.na is not None and self.n_medium is None and self.na >= 1.0:
            raise ValueError(f"na={self.na:g} needs an immersion medium: give n_medium (1.33 "
                             "water, 1.515 oil; it must exceed the NA)")
        return self


class TieSettings(SolverSettings):
    task: ClassVar[str] = "tie"
    image_axes: ClassVar[int] = 3
    method: Literal[TIE_METHODS] = "ws"
    z_um: list[float] = Field(..., min_length=2, description="defocus of each plane (µm)")
    wavelength_um: float = Field(..., ge=WAVELENGTH_RANGE_UM[0], le=WAVELENGTH_RANGE_UM[1])
    pixel_size_um: float = Field(..., gt=0, le=100)
    n_medium: float = Field(1.0, ge=1.0, le=2.0)

    @field_validator("z_um")
    @classmethod
    def _distinct_planes(cls, value):
        if len(set(value)) < 2:
            raise ValueError("needs at least 2 distinct defocus values")
        return value


class IdtSettings(SolverSettings):
    task: ClassVar[str] = "idt"
    image_axes: ClassVar[int] = 3
    method: Literal[IDT_METHODS] = "ws"
    illumination_na: list[tuple[float, float]] = Field(..., min_length=1,
                                                       description="(NA_x, NA_y) per image")
    wavelength_um: float = Field(..., ge=WAVELENGTH_RANGE_UM[0], le=WAVELENGTH_RANGE_UM[1])
    na: float = Field(..., gt=0, description="objective NA (< n_medium)")
    pixel_size_um: float = Field(..., gt=0, le=100)
    n_medium: float = Field(..., ge=1.0, le=2.0)
    z_um: list[float] = Field(..., min_length=1, description="slice depths, 0 = focal plane (µm)")
    slice_thickness_um: float | list[float] | None = None
    components: Literal["ri", "permittivity"] = "ri"

    @model_validator(mode="after")
    def _apertures_below_medium_index(self):
        if self.na >= self.n_medium:
            raise ValueError(f"na must lie in (0, n_medium={self.n_medium:g}); got {self.na:g}")
        worst = max((nx ** 2 + ny ** 2) ** 0.5 for nx, ny in self.illumination_na)
        if worst >= self.n_medium:
            raise ValueError(f"illumination_na magnitudes must be < n_medium={self.n_medium:g}; "
                             f"got {worst:g}")
        if len(self.z_um) == 1 and self.slice_thickness_um is None:
            raise ValueError("slice_thickness_um is required when z_um has a single slice")
        return self


def validated(model: type[_Settings], **values) -> _Settings:
    """Build ``model`` or raise a ``ValueError`` naming each bad parameter and its range."""
    try:
        return model(**values)
    except ValidationError as error:
        raise ValueError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"] if not isinstance(part, int)) or "parameters"
        message = item["msg"].removeprefix("Value error, ")
        got = f" (got {item['input']!r})" if item["type"] != "missing" and item["loc"] else ""
        lines.append(f"{name}: {message}{got}")
    return "; ".join(lines)


#: The settings model of each task (API names).
TASK_SETTINGS = {"deblur_dehaze": DeblurDehazeSettings, "tie": TieSettings, "idt": IdtSettings}
