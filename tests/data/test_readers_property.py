"""Property-based tests of the image and mask readers (hypothesis): whatever dtype, value set, size, mode and file
format a user's file has, ``load_image`` / ``load_mask`` either return what the module documents or raise
``DatasetError`` (one line naming the file) -- never another exception. 280 valid examples (files PIL could
write), a few seconds."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from m2s_lib.data import DatasetError, load_image, load_mask
from m2s_lib.data.layout import SMALL_MASK_MAX

SETTINGS = settings(max_examples=70, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FORMATS = {"png": "PNG", "tif": "TIFF", "bmp": "BMP", "jpg": "JPEG", "gif": "GIF"}
MODES = ["1", "L", "P", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("readers")


@st.composite
def arrays(draw):
    """A 2-D or 3-D array of a random dtype whose values come from a small random set (masks hold few values)."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.bool_]))
    channels = draw(st.sampled_from([None, None, 2, 3, 4]))
    if dtype == np.bool_:
        values = [False, True]
    elif dtype == np.float32:
        values = draw(st.lists(st.floats(-2.0, 300.0, allow_nan=False, width=32), min_size=1, max_size=4))
    else:
        hi = {np.uint8: 255, np.uint16: 65535, np.int32: 70000}[dtype]
        values = draw(st.lists(st.sampled_from([0, 1, 2, 127, 128, 254, 255, 256, hi]) | st.integers(0, hi),
                               min_size=1, max_size=4))
    shape = (h, w) if channels is None else (h, w, channels)
    idx = draw(st.lists(st.integers(0, len(values) - 1), min_size=h * w * (channels or 1),
                        max_size=h * w * (channels or 1)))
    return np.asarray(values, dtype=np.float64)[np.asarray(idx)].reshape(shape).astype(dtype)


def _write(path, array, mode, fmt) -> bool:
    """Save ``array`` converted to ``mode`` as ``fmt``; False when PIL cannot make such a file (nothing to test)."""
    try:
        img = Image.fromarray(array)
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        img.save(path, format=FORMATS[fmt])
        return True
    except (TypeError, ValueError, OSError, KeyError):
        return False


def _check_binary(mask: np.ndarray, shape) -> None:
    assert mask.dtype == np.uint8 and mask.shape == tuple(shape)
    assert set(np.unique(mask).tolist()) <= {0, 1}


@SETTINGS
@given(array=arrays(), mode=st.sampled_from([None, *MODES]), fmt=st.sampled_from(list(FORMATS)))
def test_any_file_loads_as_rgb_image_and_binary_mask_or_dataset_error(folder, array, mode, fmt):
    path = folder / f"any.{fmt}"
    assume(_write(path, array, mode, fmt))  # combinations PIL cannot save are drawn again
    for read, check in ((load_image, lambda a: a.dtype == np.uint8 and a.shape == (*array.shape[:2], 3)),
                        (load_mask, lambda a: _check_binary(a, array.shape[:2]) is None)):
        try:
            out = read(path)
        except DatasetError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            continue
        assert check(out)


@SETTINGS
@given(h=st.integers(1, 16), w=st.integers(1, 16), values=st.sets(st.sampled_from([0, 1, 2, 127, 128, 255]) | st.integers(0, 255), min_size=1, max_size=3),
       fmt=st.sampled_from(["png", "tif", "bmp"]), seed=st.integers(0, 2**16), bits=st.sampled_from([8, 16]))
def test_lossless_mask_follows_the_mask_rule(folder, h, w, values, fmt, seed, bits):
    """The rule: a mask whose maximum is at most SMALL_MASK_MAX (7) is 0/1, JPEG noise included (foreground =
    value >= 1); otherwise foreground = value >= 128 (16-bit masks with values above 255 are first scaled to 0..255)."""
    vals = np.asarray(sorted(values))
    arr = vals[np.random.default_rng(seed).integers(0, len(vals), (h, w))]
    arr = arr.astype(np.uint8 if bits == 8 else np.uint16)
    path = folder / f"rule.{fmt}"
    assume(_write(path, arr, None, fmt))
    mask = load_mask(path)
    _check_binary(mask, (h, w))
    expect = (arr >= 1).astype(np.uint8) if arr.max() <= SMALL_MASK_MAX else (arr >= 128).astype(np.uint8)
    assert (mask == expect).all()


@SETTINGS
@given(h=st.integers(1, 12), w=st.integers(1, 12), extra=st.sampled_from([None, 1, 7, 300]),
       class_values=st.sampled_from([(0, 1, 2), (0, 128, 255), (255, 0, 80, 160)]), seed=st.integers(0, 2**16),
       fmt=st.sampled_from(["png", "tif", "bmp", "jpg"]))
def test_label_maps_map_to_ids_or_name_the_unknown_value(folder, h, w, extra, class_values, seed, fmt):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(class_values), (h, w))
    values = np.asarray(class_values)[ids]
    unknown = extra is not None and extra not in class_values
    if extra is not None:
        values[0, 0] = extra
        ids[0, 0] = class_values.index(extra) if not unknown else -1
    arr = values.astype(np.uint16 if values.max() > 255 else np.uint8)
    path = folder / f"labels.{fmt}"
    assume(_write(path, arr, None, fmt))
    try:
        out = load_mask(path, classes=len(class_values), class_values=class_values)
    except DatasetError as err:
        assert str(path) in str(err)
        assert unknown or fmt == "jpg", err  # lossless maps of known values always load
        return
    assert out.dtype == np.int64 and out.shape == (h, w)
    if fmt != "jpg":
        assert not unknown and (out == ids).all()


@SETTINGS
@given(data=st.binary(max_size=300), fmt=st.sampled_from(list(FORMATS)), header=st.sampled_from(
    [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"BM", b"GIF89a"]))
def test_corrupt_files_raise_dataset_error(folder, data, fmt, header):
    path = folder / f"junk.{fmt}"
    path.write_bytes(header + data)
    for read in (load_image, load_mask):
        try:
            out = read(path)
        except DatasetError as err:
            assert str(path) in str(err) and "Replace or delete this file" in str(err)
        else:  # a few random byte strings happen to be valid tiny images: then they read as documented
            assert out.dtype == np.uint8
