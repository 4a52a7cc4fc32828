"""Public API: array types in/out, laziness, progress/cancel and clear errors on bad input."""
import dask
import dask.array as da
import numpy as np
import pytest
import torch

import wsprior

OPTICS = dict(na=0.8, wavelength_um=0.52, pixel_size_um=0.1)
TIE = dict(z_um=[-2.0, 0.0, 2.0], wavelength_um=0.53, pixel_size_um=0.2, n_medium=1.33)
IDT = dict(illumination_na=[[0.3, 0.0], [0.0, 0.3], [-0.3, 0.0], [0.0, -0.3]], wavelength_um=0.53,
           na=0.4, pixel_size_um=0.25, n_medium=1.33, z_um=[0.0], slice_thickness_um=1.0)


@pytest.fixture
def images(rng):
    return (0.2 + rng.random((2, 64, 64))).astype(np.float32)


def test_numpy_torch_and_dask_inputs_give_their_own_type(images):
    out = wsprior.deblur_dehaze(images, method="wiener", **OPTICS)
    assert isinstance(out, np.ndarray) and out.shape == images.shape and out.dtype == np.float32
    as_torch = wsprior.deblur_dehaze(torch.from_numpy(images), method="wiener", **OPTICS)
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), out, atol=1e-6)
    lazy = wsprior.deblur_dehaze(da.from_array(images, chunks=(1, 32, 32)), method="wiener", **OPTICS)
    assert isinstance(lazy, da.Array) and lazy.shape == images.shape
    np.testing.assert_allclose(lazy.compute(), out, atol=1e-6)


def test_dask_input_is_not_computed_until_asked():
    def explode():
        raise AssertionError("computed too early")

    lazy_input = da.from_delayed(dask.delayed(explode)(), shape=(2, 3, 32, 32), dtype=np.float32)
    phase = wsprior.tie_phase(lazy_input, method="tikhonov", **TIE)
    assert isinstance(phase, da.Array) and phase.shape == (2, 32, 32)
    with pytest.raises(AssertionError, match="too early"):
        phase.compute()


def test_leading_axes_are_batched_and_progress_reaches_total(images):
    stack = np.stack([images, images[:, ::-1] * 2.0])  # (2, 2, Y, X): time × position
    calls = []
    out = wsprior.deblur_dehaze(stack, method="rl", iterations=3, progress=lambda d, t: calls.append((d, t)),
                                **OPTICS)
    assert out.shape == stack.shape
    assert calls[-1][0] == calls[-1][1] and calls[-1][1] >= 4
    for index in np.ndindex(*stack.shape[:2]):   # each element is solved on its own
        single = wsprior.deblur_dehaze(stack[index], method="rl", iterations=3, **OPTICS)
        np.testing.assert_allclose(out[index], single, rtol=1e-5, atol=1e-6)
    planes = [np.stack([images[0], images[1], images[0]]), np.stack([images[1]] * 2 + [images[0]])]
    phase = wsprior.tie_phase(np.stack(planes), method="tikhonov", **TIE)
    for index, single in enumerate(planes):
        np.testing.assert_allclose(phase[index], wsprior.tie_phase(single, method="tikhonov", **TIE),
                                   rtol=1e-5, atol=1e-6)


def test_flipped_and_big_endian_arrays_are_accepted(images):
    """A flipped view (negative strides, e.g. ``image[::-1]``) and big-endian data (as some TIFF
    readers return) give the result of their contiguous, native copies."""
    flipped = images[:, ::-1]
    expected = wsprior.deblur_dehaze(np.ascontiguousarray(flipped), method="wiener", **OPTICS)
    np.testing.assert_array_equal(wsprior.deblur_dehaze(flipped, method="wiener", **OPTICS),
                                  expected)
    np.testing.assert_array_equal(
        wsprior.deblur_dehaze(flipped.astype(">f4"), method="wiener", **OPTICS), expected)


def test_measured_psf_array_is_used_as_given():
    """``psf=`` an array: the Airy PSF passed as an array gives the NA/λ result, also scaled
    (it is normalised); off-centre in a larger zero frame it is centred and gives nearly the
    same result (measured 1 % apart: the frame sets the padding); an independently computed,
    pixel-integrated Airy PSF (``wsprior.data``) too; a narrower PSF (NA 1.2 instead of 0.8)
    gives another result that deblurs less."""
    from wsprior.data.blur_haze import (WidefieldAcquisition, analytic_airy_psf,
                                        simulate_deblur_dehaze_pair)
    from wsprior.physics.blur_haze import make_psf

    acq = WidefieldAcquisition()
    image, truth = simulate_deblur_dehaze_pair((128, 128), acq, seed=4)
    optics = dict(wavelength_um=acq.wavelength_um, pixel_size_um=acq.pixel_size_um)
    by_na = wsprior.deblur_dehaze(image, method="wiener", na=acq.na, **optics)
    airy = make_psf(na=acq.na, **optics).numpy()
    as_array = wsprior.deblur_dehaze(image, method="wiener", psf=airy,
                                     pixel_size_um=acq.pixel_size_um)
    np.testing.assert_allclose(as_array, by_na, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wsprior.deblur_dehaze(image, method="wiener", psf=50.0 * airy,
                                                     pixel_size_um=acq.pixel_size_um),
                               by_na, rtol=1e-4, atol=1e-5)
    framed = np.pad(airy, ((2, 4), (7, 3)))
    off_centre = wsprior.deblur_dehaze(image, method="wiener", psf=framed,
                                       pixel_size_um=acq.pixel_size_um)
    assert np.linalg.norm(off_centre - by_na) < 0.03 * np.linalg.norm(by_na)
    independent = analytic_airy_psf(acq.na, acq.wavelength_um, acq.pixel_size_um, airy.shape[0])
    measured = wsprior.deblur_dehaze(image, method="wiener", psf=independent,
                                     pixel_size_um=acq.pixel_size_um)
    assert np.linalg.norm(measured - by_na) < 0.05 * np.linalg.norm(by_na)
    narrow = make_psf(na=1.2, **optics).numpy()
    wrong = wsprior.deblur_dehaze(image, method="wiener", psf=narrow,
                                  pixel_size_um=acq.pixel_size_um)
    assert np.linalg.norm(wrong - by_na) > 0.05 * np.linalg.norm(by_na)
    from test_deconvolution import band_error
    band = dict(na=acq.na, **optics)
    assert band_error(truth, measured, **band) < 0.95 * band_error(truth, wrong, **band)


@pytest.mark.parametrize("tile_size", [None, 64])
def test_nan_inside_a_lazy_chunk_is_a_clear_error_when_computed(tile_size):
    """dask input is checked chunk by chunk when computed (not before: it stays lazy): a NaN in
    the third plane stops the job with a ValueError naming the input. (With tiling the message
    says 'input' rather than the parameter's name, 'image'.)"""
    data = (0.2 + np.random.default_rng(0).random((4, 128, 128))).astype(np.float32)
    data[2, 70, 70] = np.nan
    lazy = wsprior.deblur_dehaze(da.from_array(data, chunks=(1, 128, 128)), method="wiener",
                                 tile_size=tile_size, **OPTICS)
    assert isinstance(lazy, da.Array)
    with pytest.raises(ValueError, match="(image|input) contains NaN or Inf"):
        lazy.compute()
    stack = np.ones((2, 3, 64, 64), np.float32)
    stack[1, 1, 3, 3] = np.inf
    phase = wsprior.tie_phase(da.from_array(stack, chunks=(1, 3, 64, 64)), method="tikhonov",
                              tile_size=tile_size and 32, **TIE)
    with pytest.raises(ValueError, match="(stack|input) contains NaN or Inf"):
        phase.compute()


def test_progress_callback_can_cancel(images):
    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        wsprior.deblur_dehaze(images, method="rl", progress=cancel, **OPTICS)


BAD_CALLS = [
    ("image", lambda: wsprior.deblur_dehaze(np.ones(16), method="wiener", **OPTICS)),
    ("image", lambda: wsprior.deblur_dehaze(np.ones((0, 16)), method="wiener", **OPTICS)),
    ("NaN", lambda: wsprior.deblur_dehaze(np.full((16, 16), np.nan), method="wiener", **OPTICS)),
    ("wavelength_um", lambda: wsprior.deblur_dehaze(np.ones((16, 16)), method="wiener",
                                                    **{**OPTICS, "wavelength_um": -0.5})),
    ("pixel_size_um", lambda: wsprior.deblur_dehaze(np.ones((16, 16)), method="wiener",
                                                    **{**OPTICS, "pixel_size_um": 0})),
    ("na", lambda: wsprior.deblur_dehaze(np.ones((16, 16)), method="wiener", psf=None,
                                         wavelength_um=0.5, pixel_size_um=0.1)),
    ("method", lambda: wsprior.deblur_dehaze(np.ones((16, 16)), method="magic", **OPTICS)),
    ("z_um", lambda: wsprior.tie_phase(np.ones((2, 16, 16)), method="tikhonov", **TIE)),
    ("stack", lambda: wsprior.tie_phase(np.ones((16, 16)), method="tikhonov", **TIE)),
    ("n_medium", lambda: wsprior.tie_phase(np.ones((3, 16, 16)), method="tikhonov",
                                           **{**TIE, "n_medium": 0.5})),
    ("Inf", lambda: wsprior.tie_phase(np.full((3, 16, 16), np.inf), method="tikhonov", **TIE)),
    ("na", lambda: wsprior.idt(np.ones((4, 16, 16)), method="tikhonov", **{**IDT, "na": 1.4})),
    ("illumination_na", lambda: wsprior.idt(np.ones((3, 16, 16)), method="tikhonov", **IDT)),
    ("illumination_na", lambda: wsprior.idt(np.ones((4, 16, 16)), method="tikhonov",
                                            **{**IDT, "illumination_na": [[1.5, 0]] * 4})),
    ("slice_thickness_um", lambda: wsprior.idt(np.ones((4, 16, 16)), method="tikhonov",
                                               **{**IDT, "slice_thickness_um": None})),
    ("images", lambda: wsprior.idt(np.ones((0, 16, 16)), method="tikhonov", **IDT)),
]


@pytest.mark.parametrize("parameter, call", BAD_CALLS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error_naming_the_parameter(parameter, call):
    with pytest.raises(ValueError, match=parameter):
        call()


def test_joint_is_deblur_only_and_return_std_needs_a_sampler(images):
    with pytest.raises(ValueError, match="method"):
        wsprior.tie_phase(np.ones((3, 16, 16)), method="joint", **TIE)
    with pytest.raises(ValueError, match="return_std"):
        wsprior.deblur_dehaze(images, method="wiener", return_std=True, **OPTICS)


def test_a_missing_prior_file_is_named(images, tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ValueError, match="nope.safetensors"):
        wsprior.deblur_dehaze(images, method="ws", prior=missing, **OPTICS)
