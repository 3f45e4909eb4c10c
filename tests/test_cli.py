"""``chromodesk analyze``: the headless main job, its JSON, its files and its errors."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from chromodesk.cli import main
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import PreprocessConfig


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory):
    """An untrained but valid bundle: the CLI's plumbing does not depend on accuracy."""
    import torch

    from chromodesk.inference.bundle import BundleMeta, save_bundle
    from chromodesk.inference.network import ChromosomeNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    pre = PreprocessConfig(size=32)
    save_bundle(ChromosomeNet("resnet18"), BundleMeta("tiny-test", "resnet18", 32, pre), path)
    return path.with_suffix(".json")


@pytest.fixture
def sample(tmp_path, real_image):
    image, xml = real_image
    folder = tmp_path / "case"
    (folder / "annotations").mkdir(parents=True)
    shutil.copy(image, folder / image.name)
    shutil.copy(xml, folder / "annotations" / xml.name)  # found in a sibling annotations/ folder
    return folder / image.name


def test_analyze_json_has_every_chromosome_with_probabilities(sample, random_bundle, capsys):
    assert main(["analyze", str(sample), "--model", str(random_bundle), "--json", "--device", "cpu"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["image"] == str(sample)
    assert result["count"] == len(result["chromosomes"]) == 46
    first = result["chromosomes"][0]
    assert set(first) >= {"id", "box", "label", "confidence", "probabilities", "assigned_label"}
    assert len(first["box"]) == 4 and first["label"] in CLASSES
    assert set(first["probabilities"]) == set(CLASSES)
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-2
    assert {"counts", "flags", "iscn"} <= set(result)
    assert sum(result["counts"].values()) == 46


def test_analyze_json_gives_each_chromosome_its_outline_inside_its_box(sample, random_bundle, capsys):
    """The shipped mask network outlines every chromosome: a closed contour in image pixels that
    stays within a few pixels of its box (the crop's margin) and covers most of it."""
    assert main(["analyze", str(sample), "--model", str(random_bundle), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    outlined = [c for c in result["chromosomes"] if c["outline"]]
    assert len(outlined) >= 44
    for c in outlined:
        x0, y0, x1, y1 = c["box"]
        pts = np.array(c["outline"])
        assert pts.shape[1] == 2 and len(pts) >= 3
        assert pts[:, 0].min() >= x0 - 5 and pts[:, 0].max() <= x1 + 5
        assert pts[:, 1].min() >= y0 - 5 and pts[:, 1].max() <= y1 + 5
        # a chromosome's outline spans most of the long side of its box
        span = max(np.ptp(pts[:, 0]) / max(x1 - x0, 1), np.ptp(pts[:, 1]) / max(y1 - y0, 1))
        assert span > 0.6


def test_analyze_json_says_which_way_each_chromosome_stands_in_the_karyogram(sample, random_bundle, capsys):
    """The shipped orientation network answers for every labelled chromosome: the angle its crop was
    turned upright by, P(p-arm up) for its label and whether the karyogram turns it end over end
    (exactly when that probability is under one half, as nobody turned it by hand)."""
    assert main(["analyze", str(sample), "--model", str(random_bundle), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for c in result["chromosomes"]:
        assert -180 <= c["angle"] <= 180 and 0 <= c["p_arm_up"] <= 1
        assert c["turned_180"] == (c["p_arm_up"] < 0.5) and c["mirrored"] is False


def test_analyze_writes_every_format(sample, random_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(sample), "--model", str(random_bundle), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "46 chromosomes" in text
    stem = sample.stem
    for name in (f"{stem}.csv", f"{stem}.karyogram.png", f"{stem}.annotated.png", f"{stem}.xml"):
        assert (out / name).stat().st_size > 0, name
    assert cv2.imread(str(out / f"{stem}.karyogram.png")) is not None
    assert len((out / f"{stem}.csv").read_text().strip().splitlines()) == 47


def test_damaged_image_is_one_line_error_and_others_still_run(sample, random_bundle, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(sample.read_bytes()[:5000])  # a truncated JPEG
    rc = main(["analyze", str(broken), str(sample), "--model", str(random_bundle), "--json"])
    captured = capsys.readouterr()
    assert rc == 1
    errors = [l for l in captured.err.splitlines() if l.startswith("chromodesk:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "truncated" in errors[0]
    assert len([l for l in captured.out.splitlines() if l.startswith("{")]) == 1  # the good image still ran


def test_missing_model_and_unknown_format_are_usage_errors(sample, tmp_path, capsys):
    assert main(["analyze", str(sample), "--model", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["analyze", str(sample), "--formats", "csv,pdf"]) == 2
    assert "pdf" in capsys.readouterr().err


def test_image_without_annotation_gets_detected_boxes(tmp_path, random_bundle, capsys):
    img = np.full((300, 400), 230, np.uint8)
    rng = np.random.default_rng(0)
    for i in range(8):
        x, y = 30 + 45 * i, 60 + (i % 3) * 60
        cv2.ellipse(img, (x, y), (6, 22), 15 * i, 0, 360, 70, -1)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "nobox.png"
    cv2.imwrite(str(path), img)
    assert main(["analyze", str(path), "--model", str(random_bundle), "--json", "--detector", "classical"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["boxes_source"] == "detected"
    assert result["count"] >= 6
    assert any("classical detector" in w for w in result["warnings"])


def test_a_damaged_detector_bundle_is_a_usage_error_naming_it(tmp_path, random_bundle, capsys):
    bad = tmp_path / "det.json"
    bad.write_text('{"kind": "classifier"}')
    assert main(["analyze", str(tmp_path / "cell.png"), "--model", str(random_bundle), "--detector", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "det.json" in err and "not a detector bundle" in err


def test_export_that_would_overwrite_the_source_xml_is_refused_in_one_line(tmp_path, real_image, random_bundle, capsys):
    image, xml = real_image
    shutil.copy(image, tmp_path / image.name)
    shutil.copy(xml, tmp_path / xml.name)  # VOC beside the image: exporting into the same folder would replace it
    before = (tmp_path / xml.name).read_bytes()
    rc = main(["analyze", str(tmp_path / image.name), "--model", str(random_bundle), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert any("overwrite the source annotation" in line for line in err)
    assert (tmp_path / xml.name).read_bytes() == before  # the technician's annotation is untouched


def test_report_writes_a_pdf_csv_and_json_for_a_case(tmp_path, random_bundle, capsys):
    """Three synthetic cells of one case; the PDF is a real PDF with one page per part."""
    from chromodesk.core.document import Box, Karyotype
    from chromodesk.core.session import default_session_path, save_session

    folder = tmp_path / "case42"
    folder.mkdir()
    for k in range(3):
        img = np.full((300, 400), 230, np.uint8)
        for i in range(8):
            cv2.ellipse(img, (30 + 45 * i, 60 + (i % 3) * 60), (6, 22), 15 * i, 0, 360, 70, -1)
        cv2.imwrite(str(folder / f"cell{k}.png"), img)
    # one cell reviewed in the app: its session (confirmed labels, a comment) is what the report uses
    from chromodesk.core.imaging import load_gray

    image = load_gray(folder / "cell0.png")
    doc = Karyotype(str(folder / "cell0.png"), image.sha256, 400, 300)
    for i in range(8):
        r = doc.add(Box(20 + 45 * i, 30, 42 + 45 * i, 90))
        doc.set_final(r.id, "1", "Dr. K")
    doc.set_cell_note(False, "nice spread")
    save_session(doc, default_session_path(folder / "cell0.png"))
    out = tmp_path / "case.pdf"
    rc = main(["report", str(folder), "--model", str(random_bundle), "--out", str(out),
               "--json", str(tmp_path / "case.json"), "--csv", str(tmp_path / "case.csv"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes().startswith(b"%PDF") and out.read_bytes().count(b"/Type /Page\n") + out.read_bytes().count(b"/Type /Page ") >= 3
    data = json.loads((tmp_path / "case.json").read_text())
    assert data["case"] == "case42" and len(data["cells"]) == 3 and data["summary"]["counted"] == 3
    assert data["cells"][0]["reviewed"] and data["cells"][0]["count"] == 8
    assert any("cells counted" in w for w in data["summary"]["warnings"])
    rows = (tmp_path / "case.csv").read_text().splitlines()
    assert rows[0].startswith("image,count,iscn") and "nice spread" in rows[1]
    assert "case case42:" in capsys.readouterr().out


def test_report_detect_finds_the_chromosomes_of_a_raw_image_despite_its_annotation(sample, random_bundle, tmp_path):
    """A lab's case of raw images: with --detect every cell's boxes come from the detector, not
    from the annotation file beside the image (which is what a case without --detect reads)."""
    from chromodesk.inference.classifier import Classifier
    from chromodesk.report import build_case

    classifier = Classifier(random_bundle, device="cpu")
    found = build_case([sample], "c", classifier, use_sessions=False, detect=True)
    assert {r.origin for r in found.docs[0]} == {"detected"} and 30 <= len(found.docs[0]) <= 60
    out = tmp_path / "raw.json"
    assert main(["report", str(sample), "--model", str(random_bundle), "--detect", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["cells"][0]["count"] == len(found.docs[0].chromosomes())


def test_report_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_version_names_the_app_and_the_bundled_models(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("ChromoDesk ") and "classifier " in out and "detector" in out
    assert "masks chromodesk-masks-" in out and "orientation " in out
