"""Preprocessing on synthetic cells: dark elongated bars (chromosome stand-ins) on a light slide."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from chromodesk.core.document import Box
from chromodesk.core.preprocess import (
    FEATURE_NAMES,
    PreprocessConfig,
    canonical_polarity,
    chromosome_crop,
    clahe,
    crop_with_margin,
    denoise,
    enhance_image,
    is_dark_on_light,
    isolate,
    long_axis_angle,
    main_component,
    otsu_mask,
    pad_square,
    preprocess_cell,
    preprocess_crops,
    relative_features,
    resize,
    rotate_upright,
    tight,
)

SLIDE, STAIN = 210, 60  # G-band: dark chromosome on a light background
CFG = PreprocessConfig()


def bar(gray: np.ndarray, centre, length: int, width: int, angle: float, value: int = STAIN):
    """Draw a filled ellipse; return its exact bounding box and its mask."""
    mask = np.zeros(gray.shape, np.uint8)
    cv2.ellipse(mask, centre, (length // 2, width // 2), angle, 0, 360, 1, -1)
    gray[mask > 0] = value
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), mask


def slanted_cell():
    """A 45° bar and a neighbour whose end reaches into the bar's box without touching it."""
    gray = np.full((120, 140), SLIDE, np.uint8)
    box, mask = bar(gray, (60, 60), 70, 12, 45)
    _, neighbour = bar(gray, (100, 38), 50, 12, 0)
    assert neighbour[box.ymin : box.ymax, box.xmin : box.xmax].sum() > 50  # it really reaches in
    assert not (mask & neighbour).any()
    return gray, box, mask, neighbour


# -- whole-image steps -----------------------------------------------------------------------
def test_denoise_and_clahe_keep_shape_and_dtype():
    gray, *_ = slanted_cell()
    noisy = np.clip(gray + np.random.default_rng(0).normal(0, 12, gray.shape), 0, 255).astype(np.uint8)
    smooth = denoise(noisy, CFG)
    assert smooth.shape == gray.shape and smooth.dtype == np.uint8
    background = (slice(90, 120), slice(0, 30))
    assert smooth[background].std() < 0.8 * noisy[background].std()  # the noise is really reduced
    # the report's 21 px search window averages more patches: stronger, 4x slower
    assert denoise(noisy, PreprocessConfig(nlm_search=21))[background].std() < noisy[background].std() / 2
    assert denoise(noisy, PreprocessConfig(nlm_h=0)) is noisy  # 0 disables it
    out = clahe(gray, CFG)
    assert out.shape == gray.shape and out.dtype == np.uint8


@pytest.mark.parametrize("stain, slide", [(STAIN, SLIDE), (230, 25)], ids=["G-band dark on light", "Q-band light on dark"])
def test_polarity_is_canonical_chromosome_bright_on_dark(stain, slide):
    gray = np.full((120, 140), slide, np.uint8)
    box, mask = bar(gray, (60, 60), 70, 12, 45, value=stain)
    assert is_dark_on_light(gray) == (stain < slide)
    enhanced = enhance_image(gray, CFG)
    assert enhanced.shape == gray.shape and enhanced.dtype == np.uint8
    assert enhanced[mask > 0].mean() > enhanced[mask == 0].mean() + 80
    crop, _ = chromosome_crop(enhanced, box, CFG)
    assert crop[28:36, 28:36].mean() > 100  # the chromosome in the middle is bright...
    assert crop[:4, :4].max() == 0 and crop[-4:, -4:].max() == 0  # ...on black


def test_forced_polarity_is_obeyed():
    gray, _, mask, _ = slanted_cell()
    kept = canonical_polarity(gray, PreprocessConfig(polarity="light_on_dark"))
    flipped = canonical_polarity(gray, PreprocessConfig(polarity="dark_on_light"))
    assert kept[mask > 0].mean() < kept[mask == 0].mean()
    np.testing.assert_array_equal(flipped, 255 - gray)


# -- per-crop steps --------------------------------------------------------------------------------
def test_crop_with_margin_is_clipped_at_the_image_edge():
    image = np.arange(100 * 80, dtype=np.int32).reshape(80, 100)
    patch, region = crop_with_margin(image, Box(2, 70, 30, 80), 4)
    assert region == Box(0, 66, 34, 80)
    np.testing.assert_array_equal(patch, image[66:80, 0:34])


def test_otsu_mask_separates_and_cleans_specks():
    patch = np.full((40, 40), 20, np.uint8)
    patch[10:30, 15:25] = 200
    patch[3, 3] = 200  # one bright pixel of dust
    mask = otsu_mask(patch, CFG.morph_kernel)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[3, 3] == 0 and mask[20, 20] == 1
    assert otsu_mask(patch, 1)[3, 3] == 1  # without the clean-up the speck stays


def test_main_component_prefers_the_one_inside_the_box_over_a_bigger_neighbour():
    binary = np.zeros((60, 60), np.uint8)
    binary[20:40, 20:26] = 1  # our chromosome, 120 pixels, inside the box
    binary[0:60, 35:50] = 1  # a much bigger neighbour that only touches the box edge
    inner = Box(18, 18, 37, 42)
    mask = main_component(binary, inner)
    assert mask[30, 22] == 1 and mask[:, 35:50].sum() == 0 and mask.sum() == 120


def test_main_component_of_an_empty_mask_keeps_the_whole_crop():
    assert main_component(np.zeros((5, 7), np.uint8), Box(0, 0, 7, 5)).sum() == 35


def test_neighbour_reaching_into_the_box_is_removed():
    gray, box, mask, neighbour = slanted_cell()
    patch, kept = isolate(enhance_image(gray, CFG), box, CFG)
    region = crop_with_margin(mask, box, CFG.margin)[1]
    ours = mask[region.ymin : region.ymax, region.xmin : region.xmax].astype(bool)
    theirs = neighbour[region.ymin : region.ymax, region.xmin : region.xmax].astype(bool)
    assert theirs.sum() > 50
    assert (kept.astype(bool) & theirs).sum() == 0  # nothing of the neighbour survives
    assert (kept.astype(bool) & ours).sum() > 0.95 * ours.sum()  # all of ours does
    assert patch[theirs].max() == 0  # and its pixels are blacked out in the picture


@pytest.mark.parametrize("angle, expected", [(0, 0.0), (45, 45.0), (90, 90.0), (135, -45.0)])
def test_long_axis_angle(angle, expected):
    gray = np.full((100, 100), SLIDE, np.uint8)
    _, mask = bar(gray, (50, 50), 60, 10, angle)
    measured = long_axis_angle(mask)
    if expected == 90:  # vertical: +90 and -90 are the same axis
        assert abs(abs(measured) - 90) < 1.0
    else:
        assert measured == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize("angle", [0, 30, 45, 120])
def test_rotate_upright_makes_the_bar_vertical(angle):
    gray = np.full((100, 100), 0, np.uint8)
    _, mask = bar(gray, (50, 50), 60, 10, angle, value=200)
    rotated, rmask = rotate_upright(gray, mask, long_axis_angle(mask))
    patch, rmask = tight(rotated, rmask)
    height, width = patch.shape
    assert height > 4 * width  # about 60 x 10
    assert 57 <= height <= 63
    assert rotated.dtype == np.uint8 and rmask.dtype == np.uint8


def test_chromosome_crop_output_and_measurements():
    gray, box, *_ = slanted_cell()
    crop, info = chromosome_crop(enhance_image(gray, CFG), box, CFG)
    assert crop.shape == (CFG.size, CFG.size) and crop.dtype == np.uint8
    assert 66 <= info["length"] <= 74 and 10 <= info["width"] <= 16  # upright: the true length and width
    assert info["angle"] == pytest.approx(45, abs=1)
    flat, flat_info = chromosome_crop(enhance_image(gray, CFG), box, PreprocessConfig(upright=False))
    assert flat_info["width"] > 40  # not turned: a 45° bar fills a square box


def test_pad_square_keeps_aspect_and_centres():
    patch = np.full((10, 4), 7, np.uint8)
    square = pad_square(patch)
    assert square.shape == (10, 10)
    np.testing.assert_array_equal(square[:, 3:7], patch)
    assert square[:, :3].max() == 0 and square[:, 7:].max() == 0
    assert resize(square, 64).shape == (64, 64) and resize(np.zeros((200, 200), np.uint8), 64).shape == (64, 64)


# -- the whole cell --------------------------------------------------------------------------------------
def three_bars():
    gray = np.full((100, 220), SLIDE, np.uint8)
    boxes = [bar(gray, (40 + 70 * i, 50), length, 10, 90)[0] for i, length in enumerate((50, 30, 70))]
    return gray, boxes


def test_preprocess_cell_shapes_and_relative_features():
    gray, boxes = three_bars()
    cell = preprocess_cell(gray, boxes, CFG)
    assert cell.images.shape == (3, 64, 64) and cell.images.dtype == np.uint8
    assert cell.features.shape == (3, len(FEATURE_NAMES)) and cell.features.dtype == np.float32
    length = cell.features[:, FEATURE_NAMES.index("log_rel_length")]
    rank = cell.features[:, FEATURE_NAMES.index("length_rank")]
    area = cell.features[:, FEATURE_NAMES.index("log_rel_area")]
    assert length[2] > length[0] > length[1]  # the longest bar has the largest relative length
    assert length[0] == pytest.approx(0.0, abs=1e-6)  # the median one is the cell's reference
    assert length[2] == pytest.approx(np.log(70 / 50), abs=0.05)
    assert rank.tolist() == [0.5, 0.0, 1.0]
    assert area[2] > area[0] > area[1]


def test_preprocess_cell_without_boxes():
    cell = preprocess_cell(np.full((50, 50), SLIDE, np.uint8), [], CFG)
    assert cell.images.shape == (0, 64, 64) and cell.features.shape == (0, len(FEATURE_NAMES))


def test_relative_features_single_and_empty():
    one = relative_features([{"area": 100.0, "length": 20.0, "width": 5.0, "density": 150.0}])
    assert one.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0]]
    zero = relative_features([{"area": 0.0, "length": 0.0, "width": 0.0, "density": 0.0}] * 2)
    assert np.isfinite(zero).all()  # an empty mask does not give -inf
    assert relative_features([]).shape == (0, len(FEATURE_NAMES))


def test_preprocess_crops_is_the_per_picture_path():
    gray, boxes = three_bars()
    pictures = [gray[b.ymin - 6 : b.ymax + 6, b.xmin - 6 : b.xmax + 6].copy() for b in boxes]
    cell = preprocess_crops(pictures, CFG)
    singles = [preprocess_cell(p, [Box(0, 0, p.shape[1], p.shape[0])], CFG) for p in pictures]
    np.testing.assert_array_equal(cell.images, np.concatenate([s.images for s in singles]))
    assert cell.raw == [s.raw[0] for s in singles]
    np.testing.assert_array_equal(cell.features, relative_features(cell.raw))  # relative to the cell, not each picture
    assert cell.features[:, FEATURE_NAMES.index("length_rank")].tolist() == [0.5, 0.0, 1.0]
    assert preprocess_crops([], CFG).images.shape == (0, 64, 64)


def test_a_tight_crop_that_is_mostly_chromosome_keeps_the_polarity_of_its_cell():
    # a karyogram crop of a long chromosome is mostly dark stain: judged alone it looks
    # "light on dark", and its white background would become the chromosome (a frame)
    gray, boxes = three_bars()
    loose = [gray[b.ymin - 6 : b.ymax + 6, b.xmin - 6 : b.xmax + 6].copy() for b in boxes]
    tight_pic = np.full((40, 14), SLIDE, np.uint8)
    tight_pic[1:39, 1:13] = STAIN
    assert not is_dark_on_light(tight_pic)  # alone it would be read the wrong way
    cell = preprocess_crops([*loose, tight_pic], CFG)
    crop = cell.images[-1]
    assert crop[crop.shape[0] // 2, crop.shape[1] // 2] > 150  # the chromosome itself is bright
    assert crop[:, : crop.shape[1] // 4].mean() < 30  # the slide beside it is dark, no bright frame


def test_output_size_follows_the_config():
    gray, boxes = three_bars()
    assert preprocess_cell(gray, boxes[:1], PreprocessConfig(size=32)).images.shape == (1, 32, 32)


# -- the config --------------------------------------------------------------------------------------------
def test_config_digest_is_stable_and_changes_with_any_parameter():
    # the crop caches of training and the shipped model are keyed by this: a changed
    # default or a changed hash recipe silently invalidates them
    assert PreprocessConfig().digest() == "33d76a48dcec"
    assert PreprocessConfig().digest() == PreprocessConfig.from_dict(PreprocessConfig().to_dict()).digest()
    changed = {PreprocessConfig(**{name: value}).digest() for name, value in
               [("size", 96), ("margin", 5), ("nlm_h", 5.0), ("clahe_clip", 3.0), ("polarity", "dark_on_light"),
                ("upright", False), ("morph_kernel", 5)]}
    assert len(changed) == 7 and "33d76a48dcec" not in changed


def test_config_from_dict_ignores_unknown_keys():
    cfg = PreprocessConfig.from_dict({"size": 80, "from_a_newer_version": 1})
    assert cfg.size == 80 and cfg.margin == PreprocessConfig().margin


# -- how a box sits on what it holds (read by the "not a chromosome" network) --------------------
def test_a_box_that_clips_a_neighbour_is_told_apart_from_a_chromosome_in_its_own_box():
    gray = np.full((120, 200), SLIDE, np.uint8)
    own, _ = bar(gray, (60, 60), 70, 12, 90)  # a vertical chromosome and its own box
    clip = Box(own.xmin - 30, own.ymin + 20, own.xmax - 8, own.ymin + 45)  # background box over its side
    empty = Box(140, 10, 190, 60)  # nothing in it
    cell = preprocess_cell(gray, [own, clip, empty], CFG)
    from chromodesk.core.preprocess import BOX_FEATURE_NAMES

    rf = cell.reject_features
    assert rf.shape == (3, len(FEATURE_NAMES) + len(BOX_FEATURE_NAMES))
    np.testing.assert_array_equal(rf[:, : len(FEATURE_NAMES)], cell.features)  # the classifier's features first
    cut = rf[:, len(FEATURE_NAMES) + BOX_FEATURE_NAMES.index("edge_cut")]
    fill = rf[:, len(FEATURE_NAMES) + BOX_FEATURE_NAMES.index("box_fill")]
    assert cut[0] < 0.3 < cut[1]  # the chromosome lies inside its box; the clipped piece is cut straight by it
    # an empty box has no ink to isolate, so its "chromosome" is the whole box: all edge, full
    assert cut[2] > 1.0 and fill[2] > 0.95 and 0.5 < fill[0] < 0.95


def test_reject_features_of_whole_picture_crops_and_of_no_boxes():
    from chromodesk.core.preprocess import BOX_FEATURE_NAMES

    gray, boxes = three_bars()
    pics = [gray[b.ymin - 3 : b.ymax + 3, b.xmin - 3 : b.xmax + 3] for b in boxes]
    cell = preprocess_crops(pics, CFG)
    assert cell.reject_features.shape == (3, len(FEATURE_NAMES) + len(BOX_FEATURE_NAMES))
    assert preprocess_cell(np.full((50, 50), SLIDE, np.uint8), [], CFG).reject_features.shape == (0, 8)
