"""The files ``wsprior.prior.train.train`` keeps beside its output to resume, as the training
widget and ``wsprior train`` leave them when a run is cancelled or interrupted: the saved state
and its sidecar stay; the loss log keeps only the steps of that state, or goes with none."""
from __future__ import annotations

import csv
from pathlib import Path

from pydantic import ValidationError

from .prior.checkpoint import PriorMetadata
from .prior.diffusion_prior import prior_metadata
from .prior.train import TrainConfig, training_state_files


def saved_state(output: str | Path) -> PriorMetadata | None:
    """Metadata of the resumable training state beside ``output`` (from its JSON sidecar)."""
    state, sidecar, _ = training_state_files(output)
    if not (state.is_file() and sidecar.is_file()):
        return None
    try:
        return PriorMetadata.model_validate_json(sidecar.read_text())
    except (OSError, ValidationError):
        return None


def trim_loss_log(output: str | Path, config: TrainConfig) -> PriorMetadata | None:
    """After a cancelled or interrupted run: the loss log keeps only the steps of the saved
    training state (a resumed run appends from there), and goes when no state was saved.
    Returns the saved state's metadata (None without one)."""
    log = training_state_files(output)[2]
    state = saved_state(output)
    if state is None or not log.is_file():
        log.unlink(missing_ok=True)
        return state
    start = prior_metadata(config.init_from).steps if config.init_from else 0
    kept_steps = state.steps - start  # the log counts this run's steps; the state all of them
    with log.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= kept_steps]
    with log.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)
    return state
