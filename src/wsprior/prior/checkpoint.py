"""Checkpoints: safetensors tensors + JSON metadata (in the safetensors header, mirrored to a
``.json`` sidecar for people). Nothing is ever unpickled: other formats are refused."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..data.training_set import Augmentation
from .network import UNetConfig
from .sde import NoiseFamilyConfig, SDEConfig

_HEADER_KEY = "wsprior"


class PriorMetadata(BaseModel):
    """Everything needed to rebuild, trust and reproduce a prior."""
    model_config = ConfigDict(extra="forbid")
    format: Literal["wsprior-prior"] = "wsprior-prior"
    format_version: Literal[1] = 1
    kind: Literal["ws", "conventional", "haze"]
    network: UNetConfig
    sde: SDEConfig
    noise_family: NoiseFamilyConfig
    patch_size: int = Field(..., ge=8)
    data_range: tuple[float, float] = (-1.0, 1.0)
    training_data: str
    training_data_sha256: str
    training_sources: list[dict[str, str]] | None = Field(
        None, description="the real images trained on: name, package, file, licence")
    augmentation: Augmentation | None = None
    field_scale_context: bool = Field(
        False, description="measured to judge structure at the scale of the field: the WS "
        "sampler then leaves TIE's and IDT's coarse scales to the prior instead of keeping the "
        "classical estimate's (set after validation, not by training)")
    steps: int = Field(..., ge=0, description="optimiser steps, including those of the prior it started from")
    initialized_from: str | None = Field(None, description="the prior training started from (fine-tuning)")
    final_loss: float | None = None
    training_device: str
    training_command: str
    package_version: str
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], metadata: PriorMetadata,
                    extra: dict | None = None) -> Path:
    """Write ``tensors`` and ``metadata`` (+ ``extra`` header entries) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {_HEADER_KEY: metadata.model_dump_json()}
    header.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=header)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(json.loads(header[_HEADER_KEY]), indent=2) + "\n")
    return path


def load_checkpoint(path: str | Path) -> tuple[PriorMetadata, dict[str, torch.Tensor], dict]:
    """``(metadata, tensors, extra header)``; a clear ``ValueError`` naming the file otherwise."""
    return _read(path, tensors=True)


def read_metadata(path: str | Path) -> PriorMetadata:
    """The checkpoint's metadata alone (its tensors are not read), validated like
    ``load_checkpoint``'s."""
    return _read(path, tensors=False)[0]


def _read(path: str | Path, tensors: bool) -> tuple[PriorMetadata, dict[str, torch.Tensor], dict]:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors checkpoints are accepted (wsprior never "
                         f"unpickles .pt/.pth/.ckpt files)")
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint file does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()} if tensors else {}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupted?): "
                         f"{error}") from None
    if _HEADER_KEY not in header:
        raise ValueError(f"{path}: safetensors file has no wsprior metadata; it is not a wsprior prior")
    try:
        metadata = PriorMetadata.model_validate_json(header[_HEADER_KEY])
    except ValidationError as error:
        raise ValueError(f"{path}: invalid prior metadata: {error}") from None
    extra = {k: json.loads(v) for k, v in header.items() if k not in (_HEADER_KEY, "format")}
    return metadata, arrays, extra
