"""Brush and polygon on synthetic masks (the geometry behind Cell ▸ Brush the outline / Redraw
outline), and the mirror and hand outline as the document, the session and the exports keep them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.edit_masks import EditRefused
from chromodesk.core.errors import InputError
from chromodesk.core.outline import outline_box, outline_mask
from chromodesk.core.redraw import paint_mask, polygon_mask

REGION = Box(10, 20, 70, 80)  # where the mask lies in the image
SIZE = (200, 150)  # the image: width, height


def bar() -> np.ndarray:
    """A horizontal bar over REGION: image x 15..54, y 40..51 (12 px thick), reaching the region's right edge."""
    mask = np.zeros((REGION.height, REGION.width), np.uint8)
    mask[20:32, 5:45] = 1
    return mask


def image_mask(mask: np.ndarray, region: Box) -> np.ndarray:
    out = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    out[region.ymin:region.ymax, region.xmin:region.xmax] = mask
    return out


def filled(outline) -> np.ndarray:
    return image_mask(outline_mask(outline, Box(0, 0, *SIZE)), Box(0, 0, *SIZE))


def test_painting_adds_the_stroke_and_the_box_grows_past_the_region():
    old = image_mask(bar(), REGION)
    box, outline = paint_mask(bar(), REGION, [(52.0, 45.0), (85.0, 45.0)], 3, image_size=SIZE)
    new = filled(outline)
    assert outline_box(outline) == box
    assert box.xmin == 15 and box.ymin == 40 and box.ymax == 52
    assert 87 <= box.xmax <= 89 and box.xmax > REGION.xmax  # past the region the mask lay over
    assert new[45, 60:86].all() and new[43:48, 80].all()  # where it was painted
    assert not new[38, 60] and not new[45, 92]  # not beyond the brush's reach
    assert (new & old).sum() >= 0.99 * old.sum()  # the chromosome itself is all still there
    assert new.sum() > old.sum() + 25 * 5


def test_erasing_a_band_keeps_the_larger_piece():
    box, outline = paint_mask(bar(), REGION, [(24.0, 30.0), (24.0, 60.0)], 2, image_size=SIZE, erase=True)
    # the band takes x 22..26: 7 px stay on the left (15..21), 28 on the right (27..54), which stays
    assert box == Box(27, 40, 55, 52)
    new = filled(outline)
    assert not new[:, :27].any() and new[45, 27:55].all()


def test_a_dab_with_no_mask_paints_a_new_one():
    box, outline = paint_mask(np.zeros((10, 10), np.uint8), Box(0, 0, 10, 10), [(50.0, 50.0)], 4, image_size=SIZE)
    assert box == Box(46, 46, 55, 55)
    assert filled(outline).sum() >= 45  # a disc of radius 4 has ~49 pixels


@pytest.mark.parametrize("stroke, radius, erase, why", [
    ([(15.0, 46.0), (54.0, 46.0)], 9, True, "nothing of the chromosome"),  # the whole bar erased
    ([(150.0, 120.0), (160.0, 120.0)], 3, False, "does not change"),  # paints beside it: dropped, nothing changes
    ([(150.0, 120.0)], 3, True, "does not change"),
    ([(30.0, 45.0)], 2, True, "does not change"),  # a hole inside: an outline has none
    ([(30.0, 45.0), (40.0, 45.0)], 3, False, "does not change"),  # painted inside it
    ([(-50.0, -50.0)], 3, False, "outside the image"),
    ([], 3, False, "no brush stroke"),
    ([(30.0, 45.0)], 0, False, "radius"),
])
def test_strokes_that_would_leave_nothing_or_change_nothing_are_refused(stroke, radius, erase, why):
    with pytest.raises(EditRefused, match=why):
        paint_mask(bar(), REGION, stroke, radius, image_size=SIZE, erase=erase)


def test_a_painted_blob_apart_from_the_chromosome_never_replaces_it():
    # larger than the bar, but not touching it: the piece holding the chromosome is the one kept
    with pytest.raises(EditRefused, match="does not change"):
        paint_mask(bar(), REGION, [(140.0, 100.0)], 20, image_size=SIZE)


def test_a_polygon_inside_the_image_is_the_outline_point_for_point():
    points = [(20.2, 30.0), (60.0, 29.6), (64.0, 50.0), (40.0, 58.4), (19.0, 50.0), (19.0, 50.0)]
    box, outline = polygon_mask(points, SIZE)
    assert outline == ((20, 30), (60, 30), (64, 50), (40, 58), (19, 50))  # rounded, the repeat dropped
    assert box == Box(19, 30, 65, 59)


def test_a_polygon_over_the_image_edge_is_cut_to_the_image():
    box, outline = polygon_mask([(-20.0, 10.0), (40.0, 10.0), (40.0, 40.0), (-20.0, 40.0)], SIZE)
    assert box == Box(0, 10, 41, 41)
    assert all(0 <= x < SIZE[0] and 0 <= y < SIZE[1] for x, y in outline)
    assert filled(outline)[10:41, 0:41].all()


@pytest.mark.parametrize("points, why", [
    ([(10.0, 10.0), (30.0, 10.0)], "at least 3"),
    ([(10.0, 10.0), (10.2, 10.0), (10.0, 9.8), (30.0, 10.0)], "at least 3"),  # repeats once rounded
    ([(10.0, 10.0), (20.0, 20.0), (30.0, 30.0)], "no area"),  # on one line
    ([(10.0, 10.0), (11.0, 10.0), (11.0, 11.0)], "no area"),  # a slip: half a pixel
    ([(300.0, 300.0), (340.0, 300.0), (340.0, 340.0)], "outside the image"),
    ([(10.0, 10.0), (float("nan"), 10.0), (30.0, 30.0)], "not numbers"),
])
def test_bad_polygons_are_refused(points, why):
    with pytest.raises(EditRefused, match=why):
        polygon_mask(points, SIZE)


# -- the document, the session and the exports ---------------------------------------------------------
def test_set_outline_moves_the_box_keeps_the_confirmation_and_asks_for_classification():
    from chromodesk.core.labels import CLASSES

    doc = Karyotype("cell.png", "0" * 64, *SIZE)
    r = doc.add(Box(15, 40, 55, 52))
    doc.set_prediction(r.id, [1.0 / len(CLASSES)] * len(CLASSES), "m", angle=3.0)
    doc.set_final(r.id, "7", "tester")
    doc.set_mirrored(r.id, True)
    events = []
    doc.subscribe(lambda e: events.append(e.kind))
    revision = r.box_revision
    box, outline = polygon_mask([(20, 30), (60, 30), (64, 50), (19, 50)], SIZE)
    doc.set_outline(r.id, box, outline)
    assert r.box == box and r.outline == outline and r.outline_by_hand and events == ["box"]
    assert r.box_revision == revision + 1 and r.probabilities is None and r.angle is None
    assert r.final == "7" and r.confirmed and r.mirrored  # the technician's word stays
    doc.set_prediction(r.id, [1.0 / len(CLASSES)] * len(CLASSES), "m", outline=((0, 0), (5, 0), (5, 5)))
    assert r.outline == outline  # classification keeps the hand-drawn outline


def test_mirror_and_hand_outline_survive_the_session_and_older_sessions_load(tmp_path):
    from chromodesk.core.session import load_session, save_session

    doc = Karyotype("cell.png", "0" * 64, *SIZE)
    a, b = doc.add(Box(15, 40, 55, 52)), doc.add(Box(100, 100, 120, 110))
    box, outline = paint_mask(bar(), REGION, [(52.0, 45.0), (80.0, 45.0)], 3, image_size=SIZE)
    doc.set_outline(a.id, box, outline)
    doc.set_mirrored(b.id, True)
    path = save_session(doc, tmp_path / "s.json")
    data = json.loads(path.read_text("utf-8"))
    saved = {rec["id"]: rec for rec in data["records"]}
    assert saved[a.id]["outline"] == [list(p) for p in outline] and saved[a.id]["outline_by_hand"] is True
    assert saved[a.id]["box"] == box.as_list() and saved[b.id]["mirrored"] is True
    loaded = load_session(path)
    assert loaded.get(a.id).outline == outline and loaded.get(a.id).outline_by_hand
    assert loaded.get(a.id).box == box and not loaded.get(a.id).mirrored and loaded.get(b.id).mirrored
    for rec in data["records"]:  # saved before the mirror existed
        del rec["mirrored"]
    path.write_text(json.dumps(data), "utf-8")
    assert not any(r.mirrored for r in load_session(path))
    data["records"][1]["mirrored"] = "yes"
    path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(InputError, match="mirrored"):
        load_session(path)


def test_the_karyogram_shows_a_mirrored_chromosome_flipped_left_right_and_the_outlines_export_marks_hand_outlines():
    from chromodesk.core.export import chromosome_ink, layout_karyogram
    from chromodesk.core.outline import outlines_json
    from chromodesk.core.preprocess import PreprocessConfig

    cfg = PreprocessConfig(nlm_h=0.0)
    gray = np.full((SIZE[1], SIZE[0]), 215, np.uint8)
    gray[30:90, 40:52] = 60  # a vertical chromosome with a wide dark blob on one side: not symmetric
    gray[35:45, 52:60] = 60
    doc = Karyotype("cell.png", "0" * 64, *SIZE)
    r = doc.add(Box(38, 28, 62, 92), record_id="c01")
    before = chromosome_ink(doc, gray, cfg)["c01"]
    figure = layout_karyogram(doc, gray, cfg)
    doc.set_mirrored("c01", True)
    after = chromosome_ink(doc, gray, cfg)["c01"]
    assert not np.array_equal(before, before[:, ::-1])
    assert np.array_equal(after, before[:, ::-1])
    mirrored = layout_karyogram(doc, gray, cfg)
    x0, y0, x1, y1 = figure.placements["c01"]
    assert mirrored.placements["c01"] == (x0, y0, x1, y1)
    assert np.array_equal(mirrored.image[y0:y1, x0:x1], figure.image[y0:y1, x0:x1, :][:, ::-1])
    assert not np.array_equal(mirrored.image, figure.image)

    assert outlines_json(doc)["objects"] == []  # no outline yet
    box, outline = polygon_mask([(40, 30), (51, 30), (51, 89), (40, 89)], SIZE)
    doc.set_outline(r.id, box, outline)
    (obj,) = outlines_json(doc)["objects"]
    assert obj["points"] == [list(p) for p in outline] and obj["by_hand"] is True and obj["box"] == box.as_list()
