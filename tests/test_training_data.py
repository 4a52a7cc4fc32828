"""The priors' training data: real images with their licences, kept apart from the robustness
benchmark, and the patch augmentation (field-scale views, gamma, pedestal)."""
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from wsprior.data import robustness, specimens, training_set
from wsprior.data.training_set import Augmentation, PatchSampler
from wsprior.prior.checkpoint import read_metadata
from wsprior.prior.train import TrainConfig, train

TINY = dict(base_channels=8, channel_multipliers=(1, 2), time_embedding=16, groups=4)


def test_real_training_images_are_in_neither_part_of_the_robustness_benchmark():
    benchmark = set(robustness.source_names())
    assert benchmark.isdisjoint(training_set.REAL_TRAINING_SOURCES)
    assert set(training_set.HELD_OUT_SOURCES).isdisjoint(training_set.REAL_TRAINING_SOURCES)
    for kept_out in ("camera", "celegans", "blobs"):   # validation, test, held out
        with pytest.raises(ValueError, match="must not be trained on"):
            training_set.real_images((kept_out,))


def test_every_real_training_image_loads_and_names_its_licence():
    images = training_set.real_images()
    assert len(images) == len(training_set.REAL_TRAINING_SOURCES)
    for image in images:
        assert image.ndim == 2 and min(image.shape) >= 256
        assert image.min() == -1 and image.max() == 1
    for record in training_set.describe_sources():
        assert record["licence"], record["name"]


def test_a_trained_prior_records_its_real_sources_and_augmentation(tmp_path):
    config = TrainConfig(network=TINY, data=["synthetic", "real"], synthetic_images=4,
                         synthetic_size=32, patch_size=16, batch_size=2, steps=2, device="cpu",
                         augmentation=Augmentation(view_scale=(1, 3)))
    metadata = read_metadata(train(config, tmp_path / "p.safetensors"))
    names = [s["name"] for s in metadata.training_sources]
    assert names == list(training_set.REAL_TRAINING_SOURCES)
    assert all(s["licence"] for s in metadata.training_sources)
    assert metadata.augmentation.view_scale == (1, 3)
    assert f"{len(names)} real images" in metadata.training_data


def _ramp(size=512):
    return np.tile(np.linspace(-1, 1, size, dtype=np.float32), (size, 1))


def _slope(patches: torch.Tensor) -> float:
    """Mean absolute step between neighbours, whichever way the patch was rotated."""
    return float(patches.diff(dim=-1).abs().mean() + patches.diff(dim=-2).abs().mean())


def test_a_view_scale_of_three_shows_three_times_the_field():
    plain = PatchSampler([_ramp()], 32, 0, Augmentation(view_scale=(1, 1), gamma=(1, 1),
                                                          offset=(0, 0)))
    wide = PatchSampler([_ramp()], 32, 0, Augmentation(view_scale=(3, 3), gamma=(1, 1),
                                                         offset=(0, 0)))
    assert _slope(wide(8)) == pytest.approx(3 * _slope(plain(8)), rel=0.02)


def test_view_scale_is_capped_by_the_image_size():
    sampler = PatchSampler([_ramp(64)], 32, 0, Augmentation(view_scale=(4, 4), gamma=(1, 1),
                                                              offset=(0, 0)))
    # a 4x view needs 128 px; the whole 64-px image is shown instead (2x)
    assert _slope(sampler(4)) == pytest.approx(2 * 2 / 63, rel=0.05)


def test_gamma_and_pedestal_map_the_unit_range():
    image = np.zeros((64, 64), np.float32)                       # 0.5 on the [0, 1] scale
    sampler = PatchSampler([image], 16, 0, Augmentation(view_scale=(1, 1), gamma=(2, 2),
                                                          offset=(0.2, 0.2)))
    expected = 2 * (0.2 + 0.8 * 0.5 ** 2) - 1
    assert torch.allclose(sampler(3), torch.full((3, 1, 16, 16), expected))


def test_images_are_drawn_in_proportion_to_their_pixel_count():
    small, large = np.full((64, 64), -1, np.float32), np.full((128, 128), 1, np.float32)
    sampler = PatchSampler([small, large], 16, 0, training_set.NO_AUGMENTATION)
    share_large = float((sampler(2000)[:, 0, 0, 0] > 0).float().mean())
    assert share_large == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("field,value", [("view_scale", (2, 1)), ("gamma", (0, 1)),
                                         ("offset", (0.5, 1.0)), ("view_scale", (0.01, 1))])
def test_bad_augmentation_ranges_are_named(field, value):
    with pytest.raises(ValidationError, match=field):
        Augmentation(**{field: value})


def test_training_sources_are_not_the_reserved_images():
    for name in training_set.REAL_TRAINING_SOURCES:
        specimens.refuse_reserved(specimens.SOURCES[name].file)
