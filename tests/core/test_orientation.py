"""Which end is up in the karyogram: the stored P(p-arm up), a label change and the technician's
turn decide it, with no network at drawing time (the core never imports torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.export import chromosome_ink, export_all, layout_karyogram, same_end_up
from chromodesk.core.labels import CLASS_INDEX, CLASSES
from chromodesk.core.preprocess import PreprocessConfig, preprocess_cell

CFG = PreprocessConfig(nlm_h=0.0)  # no denoising: fast, and the drawn shapes are clean already
ROOT = Path(__file__).resolve().parents[2]


def knobbed_cell(tilt: float = 80.0) -> tuple[np.ndarray, Box]:
    """One chromosome stand-in that is not the same both ways up: a rod with a knob at one end,
    its long axis ``tilt`` degrees from the x axis (measured counter-clockwise on screen)."""
    gray = np.full((200, 200), 215, np.uint8)
    t = np.radians(tilt)
    dx, dy = 55 * np.cos(t), -55 * np.sin(t)  # image y points down
    a, b = (int(100 + dx), int(100 + dy)), (int(100 - dx), int(100 - dy))
    cv2.line(gray, a, b, 70, 12)
    cv2.circle(gray, a, 14, 40, -1)  # the knob: wider and darker
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    ys, xs = np.nonzero(gray < 150)
    return gray, Box(int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max()) + 3, int(ys.max()) + 3)


def p_up_with(label: str, p: float, others: float = 0.5) -> tuple[float, ...]:
    values = [others] * len(CLASSES)
    values[CLASS_INDEX[label]] = p
    return tuple(values)


def classified(gray: np.ndarray, box: Box, label: str, p_up: tuple[float, ...] | None) -> Karyotype:
    """A one-chromosome document as classification leaves it: the crop's angle and P(p-arm up)."""
    doc = Karyotype("cell.png", "", gray.shape[1], gray.shape[0])
    angle = preprocess_cell(gray, [box], CFG).raw[0]["angle"]
    doc.add(box, record_id="c01", file_label=label, angle=angle if p_up is not None else None, p_up=p_up)
    return doc


def knob_on_top(ink: np.ndarray) -> bool:
    """The darker, wider end of the drawn chromosome is the upper one."""
    half = ink.shape[0] // 2
    return float(ink[:half].astype(float).sum()) > float(ink[-half:].astype(float).sum())


@pytest.mark.parametrize("tilt", [80.0, 100.0, 35.0, -60.0])
def test_a_chromosome_whose_p_arm_is_down_is_drawn_turned_over(tilt):
    gray, box = knobbed_cell(tilt)
    up = chromosome_ink(classified(gray, box, "5", p_up_with("5", 0.9)), gray, CFG)["c01"]
    down = chromosome_ink(classified(gray, box, "5", p_up_with("5", 0.1)), gray, CFG)["c01"]
    assert up.shape[0] > 2 * up.shape[1]  # upright either way
    assert knob_on_top(up) != knob_on_top(down)
    assert np.array_equal(down, up[::-1, ::-1])  # the same picture, turned 180 degrees


def test_the_network_sees_the_crop_as_the_classifier_turned_it():
    """The decision is about the classifier's crop: the knob is where the crop has it unless
    P(p-arm up) < 0.5, so a knob the crop shows on top stays on top with P(up) = 0.9."""
    gray, box = knobbed_cell(80.0)
    crop = preprocess_cell(gray, [box], CFG).images[0]  # chromosome bright on black
    in_crop_on_top = crop[:32].sum() > crop[32:].sum()
    ink = chromosome_ink(classified(gray, box, "5", p_up_with("5", 0.9)), gray, CFG)["c01"]
    assert knob_on_top(ink) == in_crop_on_top


def test_the_stored_angle_decides_which_way_round_even_where_moments_flip():
    """Moment angles near +-90 degrees can differ by 180 between two masks of one chromosome:
    the karyogram keeps its own mask's axis but the end that was up in the stored crop."""
    assert same_end_up(-89.0, 89.0) == pytest.approx(91.0)
    assert same_end_up(89.0, -89.0) == pytest.approx(-91.0)
    assert same_end_up(30.0, 28.0) == 30.0 and same_end_up(30.0, None) == 30.0
    gray, box = knobbed_cell(80.0)
    doc = classified(gray, box, "5", p_up_with("5", 0.9))
    first = chromosome_ink(doc, gray, CFG)["c01"]
    doc.get("c01").angle -= 180.0  # the same axis the other way round: the crop had the other end up
    assert np.array_equal(chromosome_ink(doc, gray, CFG)["c01"], first[::-1, ::-1])


def test_a_label_correction_changes_which_end_is_up_without_the_network():
    """P(p-arm up) is stored for all 24 classes: relabelling 5 -> 4 flips the picture at once."""
    gray, box = knobbed_cell(80.0)
    p_up = list(p_up_with("5", 0.9))
    p_up[CLASS_INDEX["4"]] = 0.2  # read as a 4, the crop has its p-arm down
    doc = classified(gray, box, "5", tuple(p_up))
    as_5 = chromosome_ink(doc, gray, CFG)["c01"]
    doc.set_final("c01", "4", "tester")
    assert np.array_equal(chromosome_ink(doc, gray, CFG)["c01"], as_5[::-1, ::-1])


def test_the_core_draws_the_turn_without_importing_torch():
    code = (
        "import sys; sys.path.insert(0, 'tests/core'); import test_orientation as t\n"
        "t.test_a_label_correction_changes_which_end_is_up_without_the_network()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_technicians_turn_wins_over_the_network():
    gray, box = knobbed_cell(80.0)
    doc = classified(gray, box, "5", p_up_with("5", 0.9))
    auto = chromosome_ink(doc, gray, CFG)["c01"]
    doc.set_turned("c01", True)
    assert np.array_equal(chromosome_ink(doc, gray, CFG)["c01"], auto[::-1, ::-1])
    doc.get("c01").p_up = p_up_with("5", 0.1)  # whatever the network says now
    assert doc.get("c01").shown_turned
    doc.set_turned("c01", False)
    assert np.array_equal(chromosome_ink(doc, gray, CFG)["c01"], auto)
    doc.set_turned("c01", None)
    assert doc.get("c01").shown_turned  # back to the network's word


def test_without_orientation_nothing_is_turned():
    gray, box = knobbed_cell(80.0)
    doc = classified(gray, box, "5", None)
    assert not doc.get("c01").shown_turned
    doc.get("c01").file_label = None  # no label: nothing to read P(p-arm up) for
    doc.get("c01").p_up = p_up_with("5", 0.1, others=0.1)
    assert not doc.get("c01").shown_turned


def test_a_moved_box_forgets_which_end_was_up():
    gray, box = knobbed_cell(80.0)
    doc = classified(gray, box, "5", p_up_with("5", 0.1))
    doc.set_turned("c01", False)
    snapshot = doc.snapshot_predictions()
    doc.set_box("c01", Box(box.xmin + 1, box.ymin, box.xmax + 1, box.ymax))
    r = doc.get("c01")
    assert r.angle is None and r.p_up is None and r.turned is None and not r.shown_turned
    # a prediction for the new box brings the network's answer back
    assert doc.set_prediction("c01", [1 / 24] * 24, "m", box_revision=r.box_revision, angle=80.0,
                              p_up=p_up_with("5", 0.2))
    assert r.angle == 80.0 and r.p_up[CLASS_INDEX["5"]] == 0.2
    doc.restore_predictions({"c01": (r.box_revision,) + snapshot["c01"][1:]})
    assert r.p_up == p_up_with("5", 0.1)  # undo puts back what classification had said


def test_the_exported_karyogram_shows_the_turn(tmp_path):
    gray, box = knobbed_cell(80.0)
    doc = classified(gray, box, "5", p_up_with("5", 0.9))
    fig = layout_karyogram(doc, gray, CFG)
    x0, y0, x1, y1 = fig.placements["c01"]
    before = fig.image[y0:y1, x0:x1].astype(int)
    doc.set_turned("c01", True)
    written = export_all(doc, gray, tmp_path, formats=["karyogram"], cfg=CFG)["karyogram"]
    after = cv2.imread(str(written), cv2.IMREAD_GRAYSCALE)[y0:y1, x0:x1].astype(int)
    assert np.abs(after - before[::-1, ::-1, 0]).mean() < 2 < np.abs(after - before[..., 0]).mean()
