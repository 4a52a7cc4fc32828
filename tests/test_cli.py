"""The ``wsprior`` command line: same names as the API and the same result for the same
parameters, TIFF with µm pixel size, resumable zarr output, clean failures."""
import re

import numpy as np
import pytest
import tifffile
import yaml

import wsprior
from wsprior import cli, io, metrics, storage
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.data.idt import led_ring, permittivity_from_ri, simulate_idt_images, volume_phantom

OPTICS = dict(na=0.8, wavelength_um=0.52, pixel_size_um=0.1)
OPTICS_FLAGS = ["--na", "0.8", "--wavelength-um", "0.52", "--pixel-size-um", "0.1"]


def _widefield_tiff(tmp_path):
    measurement, _ = simulate_deblur_dehaze_pair((96, 96), WidefieldAcquisition(), seed=2)
    path = tmp_path / "widefield.tif"
    io.write_image(path, measurement, pixel_size_um=0.1)
    return path


def test_flags_give_the_api_result_in_a_tiff_with_the_pixel_size(tmp_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    code = cli.main(["deblur-dehaze", str(source), "-o", str(target), "--method", "wiener",
                     *OPTICS_FLAGS])
    assert code == 0
    with tifffile.TiffFile(target) as tif:
        data = tif.asarray()
        x_resolution = tif.pages[0].tags["XResolution"].value
        assert tif.imagej_metadata["unit"] == "um"
    assert data.shape == (96, 96) and data.dtype == np.float32
    assert abs(x_resolution[0] / x_resolution[1] - 10.0) < 1e-3  # 10 pixels per µm
    expected = wsprior.deblur_dehaze(io.read_image(source), method="wiener", **OPTICS)
    np.testing.assert_allclose(data, expected, rtol=1e-6, atol=1e-7)


def test_return_std_writes_the_api_mean_and_std(tmp_path, tiny_prior_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    code = cli.main([
        "deblur-dehaze", str(source), "-o", str(target), "--method", "ws", "--prior",
        str(tiny_prior_path), "--steps", "3", "--n-samples", "2", "--seed", "5", "--return-std",
        *OPTICS_FLAGS])
    assert code == 0
    mean, std = io.read_image(target), io.read_image(tmp_path / "out_std.tif")
    expected_mean, expected_std = wsprior.deblur_dehaze(
        io.read_image(source), method="ws", prior=str(tiny_prior_path), steps=3, n_samples=2,
        seed=5, return_std=True, **OPTICS)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5, atol=1e-6)
    assert float(std.mean()) > 0


def test_the_job_is_announced_with_method_budget_device_and_expected_duration(
        tmp_path, tiny_prior_path, capsys):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    assert cli.main(["deblur-dehaze", str(source), "-o", str(target), "--method", "ws",
                     "--prior", str(tiny_prior_path), *OPTICS_FLAGS]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("deblur-dehaze: method ws (2 samples × 5 steps = 10 network "
                            "evaluations per image")
    assert "1 image(s) of 96 × 96" in first and "device cpu" in first
    assert re.search(r"expected (under a second|about \d+ s)$", first), first
    assert cli.main(["deblur-dehaze", str(source), "-o", str(target), "--method", "wiener",
                     *OPTICS_FLAGS]) == 0
    assert "method wiener (classical, no network)" in capsys.readouterr().out


def test_config_file_uses_the_api_names_and_flags_override_it(tmp_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump({"na": 0.8, "wavelength_um": 0.52, "pixel_size_um": 0.1,
                                      "method": "wiener", "haze_sigma_um": 2.0}))
    assert cli.main(["deblur-dehaze", str(source), "-o", str(target), "--config", str(config),
                     "--method", "rl", "--iterations", "3"]) == 0
    image = io.read_image(source)
    expected = wsprior.deblur_dehaze(image, method="rl", iterations=3, haze_sigma_um=2.0,
                                     **OPTICS)
    np.testing.assert_allclose(io.read_image(target), expected, rtol=1e-6, atol=1e-7)
    from_config = wsprior.deblur_dehaze(image, method="wiener", haze_sigma_um=2.0, **OPTICS)
    assert np.abs(expected - from_config).max() > 1e-3   # the override mattered


def test_measured_psf_file_gives_the_api_result_with_that_psf(tmp_path):
    """``--psf`` (a TIFF) instead of NA and wavelength: the API's result for that array, not
    the Airy PSF's."""
    from wsprior.physics.blur_haze import make_psf

    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    psf = make_psf(na=1.0, wavelength_um=0.52, pixel_size_um=0.1).numpy()
    io.write_image(tmp_path / "psf.tif", psf, pixel_size_um=0.1)
    assert cli.main(["deblur-dehaze", str(source), "-o", str(target), "--method", "wiener",
                     "--psf", str(tmp_path / "psf.tif"), "--pixel-size-um", "0.1"]) == 0
    image = io.read_image(source)
    expected = wsprior.deblur_dehaze(image, method="wiener", psf=io.read_image(tmp_path / "psf.tif"),
                                     pixel_size_um=0.1)
    np.testing.assert_allclose(io.read_image(target), expected, rtol=1e-6, atol=1e-7)
    airy = wsprior.deblur_dehaze(image, method="wiener", **OPTICS)   # NA 0.8
    assert np.abs(expected - airy).max() > 1e-3


def test_bad_parameter_exits_nonzero_names_it_and_writes_nothing(tmp_path, capsys):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    code = cli.main(["deblur-dehaze", str(source), "-o", str(target), "--method", "wiener",
                     "--na", "0.8", "--wavelength-um", "520", "--pixel-size-um", "0.1"])
    assert code == 2
    assert "wavelength_um" in capsys.readouterr().err
    assert not target.exists()
    assert list(tmp_path.glob(".out*")) == []  # no temporary left behind either


def test_missing_input_file_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["tie", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o.tif"),
                     "--z-um", "-1", "1", "--wavelength-um", "0.5", "--pixel-size-um", "0.2"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


IDT = dict(wavelength_um=0.53, na=0.4, pixel_size_um=0.25, n_medium=1.33, z_um=[-1.0, 1.0],
           slice_thickness_um=2.0)


def test_idt_illumination_table_from_a_file_is_used_in_its_column_order(tmp_path):
    """The (NA_x, NA_y) table read from a CSV gives the API's result for that table; the same
    table with the columns swapped gives the API's result for the swapped table, which differs
    and is further from the truth (each image paired with the wrong LED)."""
    rng = np.random.default_rng(3)
    leds = led_ring(8, 0.38, 0.3)   # rotated ring: swapping x and y pairs images with other LEDs
    delta_n, kappa = volume_phantom(2, (48, 48), IDT["pixel_size_um"], rng, max_delta_n=0.01)
    images = simulate_idt_images(permittivity_from_ri(delta_n, kappa, IDT["n_medium"]),
                                 illumination_na=leds, photons=2000, rng=rng, **IDT)
    io.write_image(tmp_path / "leds.tif", images, pixel_size_um=0.25)
    images = io.read_image(tmp_path / "leds.tif")
    results = {}
    for name, table in (("right", leds), ("swapped", leds[:, ::-1])):
        np.savetxt(tmp_path / f"{name}.csv", table, delimiter=",")
        out = tmp_path / f"dn_{name}.tif"
        code = cli.main(["idt", str(tmp_path / "leds.tif"), "-o", str(out), "--method",
                         "tikhonov", "--illumination-na", str(tmp_path / f"{name}.csv"),
                         "--wavelength-um", "0.53", "--na", "0.4", "--pixel-size-um", "0.25",
                         "--n-medium", "1.33", "--z-um", "-1", "1", "--slice-thickness-um", "2"])
        assert code == 0
        results[name] = io.read_image(out)
        expected = wsprior.idt(images, method="tikhonov", illumination_na=table, **IDT)
        assert results[name].shape == (2, 48, 48)
        np.testing.assert_allclose(results[name], expected, rtol=1e-5, atol=1e-8)
    right, swapped = results["right"], results["swapped"]
    assert np.linalg.norm(swapped - right) > 0.3 * np.linalg.norm(right)
    assert metrics.zero_mean_rmse(delta_n, right) < 0.9 * metrics.zero_mean_rmse(delta_n, swapped)


def test_interrupted_zarr_output_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch,
                                                                      capsys):
    """Ctrl-C in the middle of a run (here: as the third of four planes is about to be written)
    leaves an incomplete store that cannot be read; rerunning the same command writes only the
    planes not written yet, and the result equals an uninterrupted run's."""
    from wsprior import scheduling

    monkeypatch.setattr(scheduling, "local_workers", lambda: 1)   # planes in order
    stack = np.stack([simulate_deblur_dehaze_pair((96, 96), WidefieldAcquisition(), seed=s)[0]
                      for s in range(4)])
    source = tmp_path / "stack.tif"
    io.write_image(source, stack, pixel_size_um=0.1)
    argv = ["deblur-dehaze", str(source), "--method", "wiener", *OPTICS_FLAGS]
    assert cli.main([*argv, "-o", str(tmp_path / "whole.zarr")]) == 0
    whole = storage.open_array(tmp_path / "whole.zarr").compute()
    np.testing.assert_allclose(whole, wsprior.deblur_dehaze(stack, method="wiener", **OPTICS),
                               rtol=1e-6, atol=1e-7)

    write, written = storage._write_block, []

    def interrupted(data, path, zarr_chunks, report=None, block_info=None):  # dask reads the
        written.append(1)                                                    # signature
        if len(written) == 3:
            raise KeyboardInterrupt
        return write(data, path, zarr_chunks, report=report, block_info=block_info)
    monkeypatch.setattr(storage, "_write_block", interrupted)
    target = tmp_path / "resumed.zarr"
    assert cli.main([*argv, "-o", str(target)]) == 130
    assert "interrupted" in capsys.readouterr().err
    with pytest.raises(ValueError, match="incomplete"):
        storage.open_array(target)
    written.clear()
    assert cli.main([*argv, "-o", str(target)]) == 0
    assert len(written) == 2         # planes 3 and 4; 1 and 2 were written before the interrupt
    np.testing.assert_array_equal(storage.open_array(target).compute(), whole)


@pytest.mark.parametrize("stop_at, state_steps", [(2, None), (7, 6)])
def test_interrupted_training_keeps_no_loss_log_beyond_its_saved_state(tmp_path, monkeypatch,
                                                                       capsys, stop_at,
                                                                       state_steps):
    """Ctrl-C during ``wsprior train``: no prior; before the first saved state no loss log
    either (no half-written file); after one, the state and the log of its steps only (the
    rerun resumes and appends from there)."""
    import torch

    from wsprior.prior import train as training
    from wsprior.prior.train import training_state_files

    real = training.train

    def interrupted(config, output, *, progress=None, **kwargs):
        def then_stop(step, total, loss):
            progress(step, total, loss)
            if step == stop_at:
                raise KeyboardInterrupt
        return real(config, output, progress=then_stop, **kwargs)

    monkeypatch.setattr(training, "train", interrupted)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network trains fastest on one thread
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "network": {"base_channels": 8, "channel_multipliers": [1, 2], "time_embedding": 16,
                    "groups": 4},
        "synthetic_images": 4, "synthetic_size": 32, "patch_size": 16, "batch_size": 2,
        "steps": 1000, "checkpoint_every": 3, "device": "cpu"}))
    output = tmp_path / "out" / "prior.safetensors"
    try:
        code = cli.main(["train", "-o", str(output), "--config", str(config)])
    finally:
        torch.set_num_threads(threads)
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted; no prior written" in err and ".zarr" not in err, err
    state, sidecar, log = training_state_files(output)
    assert not output.exists() and not output.with_suffix(".json").exists()
    if state_steps is None:
        assert sorted(p.name for p in output.parent.iterdir()) == []
        assert "no training state saved yet" in err
    else:
        assert wsprior.load_prior(state).metadata.steps == state_steps and sidecar.exists()
        steps = [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]]
        assert steps == list(range(1, state_steps + 1))
        assert f"training state at step {state_steps} kept" in err


@pytest.mark.parametrize("recipe", cli.TRAINING_RECIPES)
def test_shipped_training_recipes_are_valid_settings(recipe):
    from wsprior.prior.train import TrainConfig

    config = TrainConfig(**io.read_parameters(cli.RECIPES_DIR / f"{recipe}.yaml"))
    assert "real" in config.data and "synthetic" in config.data
    assert config.compile == (recipe == "gpu") and config.device == {"cpu": "cpu", "gpu": "cuda"}[recipe]


def test_a_recipe_gives_the_settings_that_flags_leave_unset(tmp_path):
    output = tmp_path / "prior.safetensors"
    code = cli.main(["train", "--recipe", "cpu", "-o", str(output), "--steps", "1",
                     "--batch-size", "2", "--patch-size", "16", "--synthetic-images", "2",
                     "--synthetic-size", "32", "--base-channels", "8"])
    assert code == 0
    metadata = wsprior.load_prior(output).metadata
    assert metadata.training_sources and metadata.patch_size == 16   # data: the recipe's
    assert "real images" in metadata.training_data
