"""Image loading as a user meets it: every format and mode becomes 8-bit grey, and a
damaged file is a clear error naming the file, never a silently dark picture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromodesk.core.errors import InputError
from chromodesk.core.imaging import MAX_PIXELS, load_gray, stretch_to_uint8

# a small grey picture with structure (so that a decoder that stops halfway cannot pass for the real thing)
RAMP = (np.add.outer(np.arange(48) * 3, np.arange(64) * 2) % 256).astype(np.uint8)


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def assert_damaged(path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_gray(path)
    message = str(info.value)
    assert str(path) in message
    assert "damaged or truncated" in message


# -- formats and modes -------------------------------------------------------------------
def test_8bit_grey_png_is_unchanged(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(RAMP).save(path)
    image = load_gray(path)
    assert image.gray.dtype == np.uint8
    assert (image.width, image.height) == (64, 48)
    np.testing.assert_array_equal(image.gray, RAMP)
    assert image.warnings == []


def test_rgb_jpeg_with_grey_content_becomes_its_luma(tmp_path):
    # the shared metaphases are RGB JPEGs that are grey in content: R = G = B
    path = tmp_path / "cell.jpg"
    Image.fromarray(np.dstack([RAMP] * 3)).save(path, quality=95)
    image = load_gray(path)
    assert image.gray.shape == RAMP.shape and image.gray.dtype == np.uint8
    assert np.abs(image.gray.astype(int) - RAMP.astype(int)).mean() < 3  # JPEG is lossy, not a different picture


def test_rgb_uses_bt601_luma(tmp_path):
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(colours).save(path)
    gray = load_gray(path).gray
    # 0.299 R + 0.587 G + 0.114 B
    assert gray.tolist() == [[76, 150, 29, 200]]


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array(
        [[[0, 0, 0, 0], [0, 0, 0, 255]], [[100, 100, 100, 255], [0, 0, 0, 128]]], dtype=np.uint8
    )
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    gray = load_gray(path).gray
    assert gray[0, 0] == 255  # fully transparent = empty slide background, not black
    assert gray[0, 1] == 0
    assert gray[1, 0] == 100
    assert 120 <= gray[1, 1] <= 135  # half-transparent black over white


def test_grey_with_alpha_is_composited_over_white(tmp_path):
    la = np.array([[[0, 0], [40, 255]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    assert load_gray(path).gray.tolist() == [[255, 40]]


def test_palette_png_maps_through_its_palette(tmp_path):
    indices = np.array([[0, 1], [2, 3]], np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 90, 90, 90] + [0] * (252 * 3))
    path = tmp_path / "palette.png"
    im.save(path)
    # the luma of the palette colours, not the palette indices
    assert load_gray(path).gray.tolist() == [[76, 150], [29, 90]]


def test_palette_with_transparent_entry_shows_white(tmp_path):
    im = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    im.putpalette([10, 10, 10, 0, 0, 0] + [0] * (254 * 3))
    path = tmp_path / "palette_t.png"
    im.save(path, transparency=1)
    assert load_gray(path).gray.tolist() == [[10, 255]]


def test_16bit_tiff_is_stretched_from_its_own_range(tmp_path):
    # a scanner that uses 1000..3000 of 65535: a fixed >>8 shift would give a black picture (values 3..11)
    values = np.full((20, 30), 2500, np.uint16)
    values[0, 0], values[5, 5] = 1000, 3000
    path = tmp_path / "scan16.tif"
    Image.fromarray(values).save(path)
    gray = load_gray(path).gray
    assert gray.dtype == np.uint8
    assert gray[0, 0] == 0 and gray[5, 5] == 255
    assert gray[1, 1] == 191  # linear: 1500 / 2000 * 255 = 191.25


def test_16bit_png_is_stretched_too(tmp_path):
    values = np.array([[500, 600], [800, 900]], np.uint16)
    path = tmp_path / "scan16.png"
    Image.fromarray(values).save(path)
    assert load_gray(path).gray.tolist() == [[0, 64], [191, 255]]


def test_flat_16bit_image_is_black_not_a_division_error():
    assert stretch_to_uint8(np.full((3, 3), 777, np.uint16)).tolist() == [[0] * 3] * 3


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_1bit_image_becomes_0_and_255(tmp_path, suffix):
    path = tmp_path / f"bits{suffix}"
    Image.fromarray(np.array([[0, 255, 255], [255, 0, 0]], np.uint8)).convert("1").save(path)
    assert load_gray(path).gray.tolist() == [[0, 255, 255], [255, 0, 0]]


def test_bmp_grey_and_rgb(tmp_path):
    grey, rgb = tmp_path / "grey.bmp", tmp_path / "rgb.bmp"
    Image.fromarray(RAMP).save(grey)
    Image.fromarray(np.dstack([RAMP] * 3)).save(rgb)
    np.testing.assert_array_equal(load_gray(grey).gray, RAMP)
    np.testing.assert_array_equal(load_gray(rgb).gray, RAMP)


def test_multipage_tiff_uses_first_page_and_says_how_many(tmp_path):
    arrays = [np.full((8, 10), value, np.uint8) for value in (10, 200, 100)]
    for a in arrays:
        a[0, 0] = 0  # not blank
    pages = [Image.fromarray(a) for a in arrays]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = load_gray(path)
    assert np.all(image.gray[1:] == 10)
    assert len(image.warnings) == 1
    assert "stack.tif" in image.warnings[0] and "3 pages" in image.warnings[0] and "first" in image.warnings[0]


def test_sha256_is_the_hash_of_the_file_bytes(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(RAMP).save(path)
    assert load_gray(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_real_metaphase_jpeg(real_image):
    image_path, _ = real_image
    image = load_gray(image_path)
    assert image.gray.dtype == np.uint8 and image.gray.ndim == 2
    assert (image.width, image.height) == (1134, 759)
    assert image.warnings == []
    # G-band on a bright slide: mostly light background, dark chromosomes present
    assert np.median(image.gray) > 150 and image.gray.min() < 100
    assert image.sha256 == hashlib.sha256(image_path.read_bytes()).hexdigest()


# -- damaged and wrong input ----------------------------------------------------------
def test_truncated_jpeg_is_an_error_not_a_dark_picture(tmp_path):
    path = tmp_path / "cell.jpg"
    Image.fromarray(np.dstack([RAMP] * 3)).save(path)
    assert_damaged(cut_in_half(path))


def test_truncated_progressive_jpeg(tmp_path):
    path = tmp_path / "progressive.jpg"
    Image.fromarray(RAMP).save(path, progressive=True)
    assert_damaged(cut_in_half(path))


def test_truncated_png(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(RAMP).save(path)
    assert_damaged(cut_in_half(path))


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_uncompressed_tiff(tmp_path, bits):
    path = tmp_path / f"scan{bits}.tif"
    Image.fromarray(RAMP.astype(np.uint16) * 200 if bits == 16 else RAMP).save(path)
    assert_damaged(cut_in_half(path))


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate"])
def test_truncated_compressed_tiff(tmp_path, compression):
    # Pillow writes the directory of a compressed TIFF last: half a file has a header and no directory
    path = tmp_path / "scan.tif"
    Image.fromarray(RAMP).save(path, compression=compression)
    assert_damaged(cut_in_half(path))


def test_truncated_bmp(tmp_path):
    path = tmp_path / "grey.bmp"
    Image.fromarray(RAMP).save(path)
    assert_damaged(cut_in_half(path))


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n")
    with pytest.raises(InputError) as info:
        load_gray(path)
    assert str(path) in str(info.value)
    assert "not an image" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="not an image") as info:
        load_gray(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jpg"
    with pytest.raises(InputError) as info:
        load_gray(path)
    assert str(info.value) == f"{path}: image not found"


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        load_gray(tmp_path)


def test_image_above_pixel_limit_is_refused_with_its_size(tmp_path):
    path = tmp_path / "slide.png"
    Image.fromarray(np.eye(30, 40, dtype=np.uint8) * 255).save(path)
    with pytest.raises(InputError) as info:
        load_gray(path, max_pixels=1000)
    message = str(info.value)
    assert str(path) in message
    assert "40x30" in message and "1,200 pixels" in message and "1,000" in message
    assert load_gray(path, max_pixels=1200).gray.shape == (30, 40)  # the limit itself is allowed


def test_default_pixel_limit_is_documented_value():
    assert MAX_PIXELS == 100_000_000
