"""Exports as a user sees them: the CSV table, the karyogram and annotated PNGs, the VOC file."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from chromodesk.core import atomic
from chromodesk.core.document import Box, Karyotype
from chromodesk.core.export import (
    CSV_COLUMNS,
    STATE_COLOURS,
    csv_text,
    export_all,
    layout_karyogram,
    render_annotated,
    render_karyogram,
    write_csv,
    write_png,
)
from chromodesk.core.labels import CLASSES
from chromodesk.core.voc import read_voc

BACKGROUND, CHROMOSOME = 215, 70


def peaked(label: str, p: float, second: str, p2: float, third: str, p3: float) -> list[float]:
    """A probability vector over CLASSES with a chosen top 3; the rest shares what is left."""
    probs = np.full(len(CLASSES), (1.0 - p - p2 - p3) / (len(CLASSES) - 3))
    for name, value in ((label, p), (second, p2), (third, p3)):
        probs[CLASSES.index(name)] = value
    return probs.tolist()


def draw_blob(gray: np.ndarray, centre, length: int, width: int, angle: float) -> Box:
    """A dark elongated blob (a chromosome stand-in); returns its exact bounding box."""
    mask = np.zeros_like(gray)
    cv2.ellipse(mask, centre, (length // 2, width // 2), angle, 0, 360, 255, -1)
    gray[mask > 0] = CHROMOSOME
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def make_cell() -> tuple[Karyotype, np.ndarray]:
    """Five blobs: a confident 1, a doubtful 2 half its length, a confirmed 7, a file-only 21, an unnamed one."""
    gray = np.full((260, 380), BACKGROUND, np.uint8)
    boxes = {
        "long": draw_blob(gray, (70, 70), 80, 14, 30),
        "short": draw_blob(gray, (200, 60), 40, 14, 100),
        "seven": draw_blob(gray, (310, 70), 50, 14, 0),
        "file21": draw_blob(gray, (80, 190), 36, 14, 60),
        "stray": draw_blob(gray, (250, 190), 30, 14, 150),
    }
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    doc = Karyotype("/data/cells/cell_01.png", "ab" * 32, gray.shape[1], gray.shape[0])
    doc.add(boxes["long"], record_id="long", file_label="1", file_name="A1")
    doc.add(boxes["short"], record_id="short", file_label="2", file_name="A2")
    doc.add(boxes["seven"], record_id="seven", file_label="7", file_name="C7")
    doc.add(boxes["file21"], record_id="file21", file_label="21", file_name="G21")
    doc.add(boxes["stray"], record_id="stray", file_name="blob")
    doc.set_prediction("long", peaked("1", 0.95, "2", 0.03, "3", 0.01), "model-a")
    doc.set_prediction("short", peaked("2", 0.70, "3", 0.20, "1", 0.05), "model-a")
    doc.set_prediction("seven", peaked("8", 0.55, "7", 0.40, "9", 0.03), "model-a")
    doc.set_final("seven", "7", "dr.lee", when="2024-05-01T10:00:00+00:00")
    return doc, gray


@pytest.fixture
def cell() -> tuple[Karyotype, np.ndarray]:
    return make_cell()


def decode_png(path: Path) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, f"{path} does not decode as an image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def dark_rows(rgb: np.ndarray, rect, threshold: int = 160) -> np.ndarray:
    x0, y0, x1, y1 = rect
    grey = rgb[y0:y1, x0:x1].min(axis=2)
    return np.nonzero((grey < threshold).any(axis=1))[0]


def is_red(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


# -- CSV -------------------------------------------------------------------------------------
def test_csv_has_one_row_per_chromosome_with_top3(cell):
    doc, _ = cell
    rows = list(csv.DictReader(io.StringIO(csv_text(doc))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [r["id"] for r in rows] == ["long", "short", "seven", "file21", "stray"]
    long_ = rows[0]
    assert (long_["predicted"], long_["confidence"]) == ("1", "0.9500")
    assert (long_["second"], long_["second_p"], long_["third"], long_["third_p"]) == ("2", "0.0300", "3", "0.0100")
    assert long_["model_id"] == "model-a" and long_["final_label"] == "1"
    b = doc.get("long").box
    assert [int(long_[k]) for k in ("xmin", "ymin", "xmax", "ymax")] == b.as_list()
    # the confirmed label wins over the prediction, and says who and when
    seven = rows[2]
    assert (seven["predicted"], seven["confidence"], seven["final_label"]) == ("8", "0.5500", "7")
    assert (seven["confirmed_by"], seven["confirmed_at"]) == ("dr.lee", "2024-05-01T10:00:00+00:00")
    # no prediction: empty probability columns, the file's label is the final one
    file21 = rows[3]
    assert file21["predicted"] == file21["confidence"] == file21["second"] == ""
    assert (file21["final_label"], file21["file_label"]) == ("21", "21")
    assert rows[4]["final_label"] == ""
    assert {r["detector_doubt"] for r in rows} == {"0.000"}  # given boxes: nothing doubted
    doc.add(Box(5, 5, 20, 30), record_id="faint", origin="detected", doubt=1.25)
    faint = list(csv.DictReader(io.StringIO(csv_text(doc))))[-1]
    assert (faint["id"], faint["detector_doubt"]) == ("faint", "1.250")


def test_failed_write_keeps_previous_file(cell, tmp_path, monkeypatch):
    doc, _ = cell
    target = write_csv(doc, tmp_path / "cell.csv")
    before = target.read_bytes()
    doc.set_final("long", "3", "dr.lee")

    def refuse(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_csv(doc, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.csv"]  # no temp file left behind


# -- karyogram -------------------------------------------------------------------------------
def test_karyogram_png_is_a_clean_white_figure(cell, tmp_path):
    doc, gray = cell
    paths = export_all(doc, gray, tmp_path, formats=("karyogram",), iscn="46,XX")
    assert paths == {"karyogram": tmp_path / "cell_01.karyogram.png"}
    rgb = decode_png(paths["karyogram"])
    h, w, _ = rgb.shape
    assert 700 <= w <= 3000 and 500 <= h <= 3000
    assert (rgb == 255).all(axis=2).mean() > 0.85  # mostly white paper
    assert np.array_equal(rgb, render_karyogram(doc, gray, iscn="46,XX"))  # deterministic


def test_each_chromosome_stands_in_the_slot_of_its_class(cell):
    doc, gray = cell
    fig = layout_karyogram(doc, gray)
    assert list(fig.slots) == [c for c in ("1 2 3 4 5 6 7 8 9 10 11 12 X 13 14 15 16 17 18 19 20 21 22 Y").split()]
    for rid, label in (("long", "1"), ("short", "2"), ("seven", "7"), ("file21", "21")):
        x0, y0, x1, y1 = fig.slots[label]
        px0, py0, px1, py1 = fig.placements[rid]
        assert x0 <= px0 and px1 <= x1 and y0 <= py0 and py1 <= y1, (rid, label)
        assert len(dark_rows(fig.image, fig.slots[label])) > 10
    assert len(dark_rows(fig.image, fig.slots["8"])) == 0  # the prediction 8 was overruled by the reviewer
    # original grey pixels (not the contrast-enhanced ones), dark on white
    x0, y0, x1, y1 = fig.slots["7"]
    assert abs(int(fig.image[y0:y1, x0:x1].min()) - CHROMOSOME) < 25
    # the chromosome with no label waits in the unassigned area
    ux0, uy0, ux1, uy1 = fig.unassigned
    px0, py0, px1, py1 = fig.placements["stray"]
    assert ux0 <= px0 and px1 <= ux1 and uy0 <= py0 and py1 <= uy1


def test_karyogram_uses_one_scale_for_all_chromosomes(cell):
    doc, gray = cell
    fig = layout_karyogram(doc, gray)
    long_h = np.ptp(dark_rows(fig.image, fig.slots["1"])) + 1
    short_h = np.ptp(dark_rows(fig.image, fig.slots["2"])) + 1
    # 80 px vs 40 px in the image, at different angles: twice as tall, not both filling the row
    assert long_h / short_h == pytest.approx(2.0, rel=0.15)
    assert fig.placements["long"][3] - fig.placements["long"][1] == pytest.approx(170, abs=3)


def test_abnormal_counts_are_red_and_normal_ones_are_not(cell):
    doc, gray = cell
    fig = layout_karyogram(doc, gray)

    def label_red(label: str) -> bool:
        x0, _, x1, y1 = fig.slots[label]
        return bool(is_red(fig.image[y1 : y1 + 50, x0:x1]).any())

    assert label_red("1") and label_red("7") and label_red("5")  # one, one, none: all red
    assert label_red("X") and label_red("Y")  # no sex chromosome at all
    for rid in ("long", "short", "seven", "file21"):
        doc.add(doc.get(rid).box, record_id=rid + "_b", file_label=doc.get(rid).label)
    for x in ("x1", "x2"):
        doc.add(doc.get("short").box, record_id=x, file_label="X")
    fig = layout_karyogram(doc, gray)
    assert not label_red("1") and not label_red("21")  # pairs are normal
    assert not label_red("X") and not label_red("Y")  # so is XX
    doc.add(doc.get("short").box, record_id="y1", file_label="Y")  # XXY
    fig = layout_karyogram(doc, gray)
    assert label_red("X") and label_red("Y")


# -- annotated image -----------------------------------------------------------------------------
def test_annotated_boxes_are_coloured_by_review_state(cell, tmp_path):
    doc, gray = cell
    rgb = render_annotated(doc, gray)
    assert rgb.shape[0] > gray.shape[0] and rgb.shape[1] == gray.shape[1]  # legend strip below
    expected = {"long": "high", "short": "medium", "seven": "confirmed", "file21": "none"}
    for rid, state in expected.items():
        b = doc.get(rid).box
        assert tuple(rgb[(b.ymin + b.ymax) // 2, b.xmin]) == STATE_COLOURS[state], rid
    doc.set_final("seven", None, None)  # unconfirmed again: its confidence 0.55 is low
    rgb = render_annotated(doc, gray)
    b = doc.get("seven").box
    assert tuple(rgb[(b.ymin + b.ymax) // 2, b.xmin]) == STATE_COLOURS["low"]


def test_png_is_written_in_rgb_order(tmp_path):
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 255
    assert tuple(decode_png(write_png(red, tmp_path / "red.png"))[0, 0]) == (255, 0, 0)


# -- export_all and VOC --------------------------------------------------------------------------
def test_export_all_writes_every_format_and_voc_has_final_labels(cell, tmp_path):
    doc, gray = cell
    paths = export_all(doc, gray, tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {
        "csv": "cell_01.csv", "karyogram": "cell_01.karyogram.png", "annotated": "cell_01.annotated.png",
        "voc": "cell_01.xml", "outlines": "cell_01.outlines.json"}
    assert all(p.is_file() for p in paths.values())
    # outlines beside the boxes, in the polygon data set's layout (none drawn yet: an empty list, not a missing file)
    import json

    outlines = json.loads(paths["outlines"].read_text())
    assert outlines["image"] == "cell_01.png" and outlines["objects"] == []
    ann = read_voc(paths["voc"], (doc.width, doc.height))
    assert [(o.label, o.box) for o in ann.objects] == [(r.label, r.box) for r in doc]
    assert [o.label for o in ann.objects] == ["1", "2", "7", "21", None]  # the reviewer's 7, not the model's 8
    assert ann.objects[-1].name == "blob"  # an unknown name is kept, never dropped


def test_export_all_rejects_unknown_formats_before_writing(cell, tmp_path):
    doc, gray = cell
    with pytest.raises(ValueError, match="'pdf'.*csv, karyogram, annotated, voc"):
        export_all(doc, gray, tmp_path, formats=("csv", "pdf"))
    assert list(tmp_path.iterdir()) == []


def test_export_never_overwrites_the_source_annotation(cell, tmp_path):
    doc, gray = cell
    source = tmp_path / "cell_01.xml"
    source.write_text("<annotation/>")
    doc.annotation_path = str(source)
    with pytest.raises(ValueError, match="overwrite the source annotation"):
        export_all(doc, gray, tmp_path)
    assert source.read_text() == "<annotation/>"
    assert export_all(doc, gray, tmp_path, formats=("csv",))["csv"].is_file()


def test_grey_image_must_match_the_document(cell):
    doc, gray = cell
    with pytest.raises(ValueError, match="380x260"):
        render_karyogram(doc, gray[:100])


# -- a real metaphase ------------------------------------------------------------------------------
def test_real_metaphase_exports(real_image, tmp_path):
    from chromodesk.core.karyotype import iscn_string
    from chromodesk.pipeline import open_cell

    image, xml = real_image
    if not image.is_file() or not xml.is_file():
        pytest.skip(f"{image.name} or its annotation not found")
    doc, loaded, _ = open_cell(image, xml)
    counts = doc.counts()
    iscn = iscn_string(counts)
    paths = export_all(doc, loaded.gray, tmp_path, iscn=iscn)
    rgb = decode_png(paths["karyogram"])
    fig = layout_karyogram(doc, loaded.gray, iscn=iscn)
    assert np.array_equal(rgb, fig.image)
    assert (rgb > 240).all(axis=2).mean() > 0.75
    for label, n in counts.items():
        assert (len(dark_rows(rgb, fig.slots[label])) > 0) == (n > 0), label
    assert fig.unassigned is None  # every object of this file has a valid name
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == len(doc) == 46
    assert [o.label for o in read_voc(paths["voc"]).objects] == [r.label for r in doc]
    assert os.path.getsize(paths["annotated"]) > 10_000
