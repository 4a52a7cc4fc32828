"""The ``wsprior`` command line: same names as the API, TIFF with µm pixel size, clean failures."""
import numpy as np
import tifffile
import yaml

from wsprior import cli, io
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair


def _widefield_tiff(tmp_path):
    measurement, _ = simulate_deblur_dehaze_pair((96, 96), WidefieldAcquisition(), seed=2)
    path = tmp_path / "widefield.tif"
    io.write_image(path, measurement, pixel_size_um=0.1)
    return path


def test_flags_produce_a_tiff_with_the_pixel_size(tmp_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    code = cli.main([
        "deblur-dehaze", str(source), "-o", str(target), "--method", "wiener", "--na", "0.8",
        "--wavelength-um", "0.52", "--pixel-size-um", "0.1"])
    assert code == 0
    with tifffile.TiffFile(target) as tif:
        data = tif.asarray()
        x_resolution = tif.pages[0].tags["XResolution"].value
        assert tif.imagej_metadata["unit"] == "um"
    assert data.shape == (96, 96) and data.dtype == np.float32
    assert abs(x_resolution[0] / x_resolution[1] - 10.0) < 1e-3  # 10 pixels per µm


def test_sampler_with_uncertainty_writes_mean_and_std(tmp_path, tiny_prior_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    code = cli.main([
        "deblur-dehaze", str(source), "-o", str(target), "--method", "ws", "--prior",
        str(tiny_prior_path), "--steps", "3", "--n-samples", "2", "--return-std", "--na", "0.8",
        "--wavelength-um", "0.52", "--pixel-size-um", "0.1"])
    assert code == 0
    mean, std = io.read_image(target), io.read_image(tmp_path / "out_std.tif")
    assert mean.shape == std.shape == (96, 96) and float(std.mean()) > 0


def test_config_file_uses_the_api_names_and_flags_override_it(tmp_path):
    source, target = _widefield_tiff(tmp_path), tmp_path / "out.tif"
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump({"na": 0.8, "wavelength_um": 0.52, "pixel_size_um": 0.1,
                                      "method": "wiener"}))
    assert cli.main(["deblur-dehaze", str(source), "-o", str(target), "--config", str(config),
                     "--method", "rl", "--iterations", "3"]) == 0
    assert target.exists()


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


def test_idt_reads_the_illumination_table_from_a_file(tmp_path, rng):
    images = (1 + 0.01 * rng.standard_normal((4, 48, 48))).astype(np.float32)
    io.write_image(tmp_path / "leds.tif", images, pixel_size_um=0.25)
    np.savetxt(tmp_path / "na.csv", [[0.3, 0], [0, 0.3], [-0.3, 0], [0, -0.3]], delimiter=",")
    code = cli.main(["idt", str(tmp_path / "leds.tif"), "-o", str(tmp_path / "dn.tif"),
                     "--method", "tikhonov", "--illumination-na", str(tmp_path / "na.csv"),
                     "--wavelength-um", "0.53", "--na", "0.4", "--pixel-size-um", "0.25",
                     "--n-medium", "1.33", "--z-um", "-1", "1"])
    assert code == 0
    assert tifffile.imread(tmp_path / "dn.tif").shape == (2, 48, 48)
