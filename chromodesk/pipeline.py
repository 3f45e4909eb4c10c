"""The headless analysis pipeline, also the Python API for other genome-analysis software.

    from chromodesk.pipeline import analyze
    result = analyze("cell.jpg")            # boxes from cell.xml or annotations/cell.xml
    result.to_json()["chromosomes"][0]      # {"id", "box", "label", "confidence", ...}

No Qt here; torch is reached only through ``chromodesk.inference`` (imported lazily so
that reading files and exporting work without loading torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.imaging import LoadedImage, load_gray
from chromodesk.core.karyotype import CellAnalysis, analyse_cell
from chromodesk.core.labels import CLASS_INDEX, CLASSES
from chromodesk.core.outline import mask_outline, outline_mask
from chromodesk.core.preprocess import CellCrops, mask_regions, preprocess_cell
from chromodesk.core.voc import find_annotation, read_voc

if TYPE_CHECKING:
    from chromodesk.inference.classifier import Classifier


@dataclass
class AnalysisResult:
    doc: Karyotype
    image: LoadedImage
    cell: CellAnalysis | None = None
    boxes_source: str = "annotations"  # annotations | detected (each box also has its own origin, drawn included)

    def to_json(self) -> dict:
        chromosomes = []
        for r in self.doc:
            entry = {
                "id": r.id,
                "box": r.box.as_list(),
                "label": r.label,
                "confidence": round(float(r.confidence), 4) if r.confidence is not None else None,
                "probabilities": {c: round(float(p), 4) for c, p in zip(CLASSES, r.probabilities)} if r.probabilities else {},
                "predicted_label": r.predicted,
                "assigned_label": r.assigned,
                "file_label": r.file_label,
                "origin": r.origin,
                "not_a_chromosome": r.rejected,
                "reject_probability": round(float(r.reject_probability), 4) if r.reject_probability is not None else None,
                # nats by which the detector's score fell short of its threshold (0: not doubted):
                # such a box counts only where its cell has room for it
                "detector_doubt": round(float(r.doubt), 3),
                # the mask's outer contour in image pixels (null: no mask network, threshold inside the box)
                "outline": [list(p) for p in r.outline] if r.outline else None,
                # the karyogram's picture: the crop turned upright by ``angle`` degrees, then turned
                # 180 degrees when ``turned_180``; ``p_arm_up``: P(p-arm up) of the upright crop, as labelled
                "angle": round(float(r.angle), 2) if r.angle is not None else None,
                "p_arm_up": round(float(r.p_up[CLASS_INDEX[r.label]]), 4) if r.p_up and r.label in CLASS_INDEX else None,
                "turned_180": r.shown_turned,
                "mirrored": r.mirrored,
            }
            if r.unknown_name:
                entry["file_name"] = r.file_name
            chromosomes.append(entry)
        out = {
            "image": self.doc.image_path,
            "annotations": self.doc.annotation_path,
            "boxes_source": self.boxes_source,
            "chromosomes": chromosomes,
            "count": len(self.doc.chromosomes()),
            "boxes": len(self.doc),
            "model_id": next((r.model_id for r in self.doc if r.model_id), None),
            "warnings": list(self.doc.warnings),
        }
        if self.cell is not None:
            out.update(self.cell.to_json())
        return out


@lru_cache(maxsize=4)
def _shipped_detector(device: str):
    """The bundled learned detector, loaded once per process (None when the bundle is absent)."""
    from chromodesk.inference.detector import DEFAULT_DETECTOR, Detector

    return Detector(DEFAULT_DETECTOR, device=device) if DEFAULT_DETECTOR.is_file() else None


def find_boxes(gray: np.ndarray, detector=None, device: str = "auto") -> tuple[list[tuple[Box, float]], str]:
    """Boxes for an image without annotation: the learned detector (``detector``, else the shipped
    bundle), or the classical detector when no detector bundle is there or ``detector ==
    "classical"``. Returns ([(box, doubt), ...], note): ``doubt`` > 0 for a box the detector scored
    under its threshold, which joins the cell only where the cell has room for it (see
    ``Classifier.finish_cell``)."""
    if detector is None:
        detector = _shipped_detector(device)
    if detector == "classical":
        from chromodesk.core.detect import detect_chromosomes

        boxes = detect_chromosomes(gray)
        return [(b, 0.0) for b in boxes], f"{len(boxes)} boxes proposed by the classical detector"
    if detector is not None:
        found = detector.detect_doubted(gray)
        sure = sum(1 for _, d in found if d == 0)
        note = f"{sure} boxes found by the learned detector ({detector.model_id})"
        if len(found) > sure:
            note += (f", and {len(found) - sure} it was unsure of (each counts only where the cell has room for it; "
                     "in the app, N brings one in)")
        return found, note
    from chromodesk.core.detect import detect_chromosomes

    boxes = detect_chromosomes(gray)
    return [(b, 0.0) for b in boxes], (f"{len(boxes)} boxes proposed by the classical detector (no detector bundle "
                                       "installed: expect merged crossings)")


def open_cell(image_path: str | Path, annotations: str | Path | None = None, detect: bool = True,
              detector=None, device: str = "auto", ignore_annotations: bool = False) -> tuple[Karyotype, LoadedImage, str]:
    """Load an image and its boxes (VOC beside it, or ``annotations``, or automatic detection;
    ``ignore_annotations``: detect even when a VOC file is there, as for a raw image)."""
    image = load_gray(image_path)
    doc = Karyotype(str(image_path), image.sha256, image.width, image.height, warnings=list(image.warnings))
    xml = None if ignore_annotations else Path(annotations) if annotations else find_annotation(image_path)
    source = "annotations"
    if xml is not None:
        ann = read_voc(xml, (image.width, image.height))
        doc.annotation_path = str(xml)
        doc.warnings.extend(ann.warnings)
        for obj in ann.objects:
            doc.add(obj.box, file_label=obj.label, file_name=obj.name, origin="annotations")
    elif detect:
        try:
            found, note = find_boxes(image.gray, detector, device)
        except InputError as exc:  # the detectors know the pixels, not the file: name it here
            raise InputError(image_path, exc.problem) from None
        for box, doubt in found:
            doc.add(box, origin="detected", doubt=doubt)
        source = "detected"
        doc.warnings.append(f"{Path(image_path).name}: no annotation file; {note}")
    if len(doc) == 0:
        if xml is not None:
            raise InputError(xml, f"no usable chromosome boxes for {Path(image_path).name} (no objects, or every box "
                                  "is empty or outside the image)")
        raise InputError(image_path, "no chromosomes found (no annotation file and detection found nothing)")
    return doc, image, source


def classify_document(doc: Karyotype, gray: np.ndarray, classifier: "Classifier") -> CellAnalysis:
    """Predict every record, then assign labels at the cell level (confirmed labels are fixed)."""
    records = list(doc)
    boxes = [r.box for r in records]
    doubt = np.array([record_doubt(r) for r in records])
    hand = hand_masks([r.outline if r.outline_by_hand else None for r in records], boxes, classifier.preprocess, gray.shape)
    crops = preprocess_cell(gray, boxes, classifier.preprocess, segment=segment_of(classifier), hand=hand,
                            cell=doubt == 0)
    for info, r in zip(crops.raw, records):
        info["box"] = r.box.as_list()  # as in the app's classification job; ignored by real models
    if hasattr(classifier, "predict_cell"):
        # (a lab's wrapper may predate doubted boxes: they come only from the learned detector)
        probs, reject_p, rejected = classifier.predict_cell(crops, doubt=doubt) if doubt.any() else \
            classifier.predict_cell(crops)
    else:  # a classifier without the "not a chromosome" outcome (e.g. a lab's own wrapper)
        probs = classifier.predict(crops)
        reject_p, rejected = [None] * len(records), list(doubt > 0)
    ends = orient_crops(gray, [r.box for r in records], crops, classifier)
    outlines = crop_outlines(crops, [r.box for r in records], classifier.preprocess, gray.shape)
    for record, p, rp, rej, (angle, p_up), outline in zip(records, probs, reject_p, rejected, ends, outlines):
        doc.set_prediction(record.id, p, classifier.model_id,
                           reject_probability=None if rp is None or not getattr(classifier, "has_reject", False) else rp,
                           rejected=bool(rej), angle=angle, p_up=p_up, outline=outline)
    return reassign(doc)


def record_doubt(record) -> float:
    """The detector's doubt about a box, unless the technician has said it holds a chromosome."""
    return 0.0 if record.excluded is False or record.confirmed else float(record.doubt)


def crop_outlines(crops: CellCrops, boxes: list[Box], cfg, shape: tuple[int, int]) -> list:
    """Per crop: the outline of the mask that separated it from its neighbours (image pixels), or
    None where none did."""
    if crops.masks is None:
        return [None] * len(boxes)
    regions = mask_regions(boxes, cfg, shape[1], shape[0])
    return [None if m is None else mask_outline(m, r) for m, r in zip(crops.masks, regions)]


def segment_of(classifier):
    """The mask network's ``masks`` when the classifier carries one (test doubles and a lab's own
    wrappers may not: their crops are cut by threshold alone, as before)."""
    segmenter = getattr(classifier, "segmenter", None)
    return segmenter.masks if segmenter is not None else None


def hand_masks(outlines: list, boxes: list[Box], cfg, shape: tuple[int, int]) -> list | None:
    """The technician's outlines (knife split, join; None elsewhere) as masks over each box's
    region, for ``preprocess_cell(hand=...)``; None when there is none."""
    if not any(outlines):
        return None
    regions = mask_regions(boxes, cfg, shape[1], shape[0])
    return [outline_mask(o, r) if o else None for o, r in zip(outlines, regions)]


def orient_crops(gray: np.ndarray, boxes: list[Box], crops: CellCrops, classifier) -> list[tuple]:
    """Per crop: (the angle it was turned upright by, P(p-arm up) of it as each of the 24 classes),
    from the classifier's orientation network; (None, None) each where it has none. All 24 classes
    now, so that the karyogram follows a later label correction without the network."""
    orienter = getattr(classifier, "orienter", None)
    if orienter is None:
        return [(None, None)] * len(boxes)
    if classifier.preprocess != orienter.crop_config:
        # crops as the network was trained on, cut by the same outlines (same margin: same regions)
        same = crops.masks if orienter.crop_config.margin == classifier.preprocess.margin else None
        crops = preprocess_cell(gray, boxes, orienter.crop_config, outlines=same)
    p_up = np.asarray(orienter.p_up(crops.images), dtype=np.float64)
    if p_up.shape != (len(boxes), len(CLASSES)):
        raise ValueError(f"orientation network returned {p_up.shape}, expected ({len(boxes)}, {len(CLASSES)})")
    return [(float(info["angle"]), tuple(row)) for info, row in zip(crops.raw, p_up)]


def reassign(doc: Karyotype) -> CellAnalysis:
    """Cell-level assignment over the current predictions; confirmed labels are constraints.
    Boxes that hold no chromosome take no part (and get no assigned label)."""
    records = [r for r in doc if r.probabilities is not None and not r.rejected]
    fixed = {i: r.final for i, r in enumerate(records) if r.confirmed}
    probs = np.array([r.probabilities for r in records]) if records else np.zeros((0, len(CLASSES)))
    cell = analyse_cell(probs, fixed=fixed)
    assigned = {r.id: None for r in doc if r.rejected}
    assigned.update({r.id: cell.assigned[i] for i, r in enumerate(records)})
    doc.set_assignments(assigned)
    return cell


def analyze(image_path: str | Path, annotations: str | Path | None = None, classifier: "Classifier | None" = None,
            model: str | Path | None = None, device: str = "auto", detect: bool = True, detector=None,
            ignore_annotations: bool = False) -> AnalysisResult:
    doc, image, source = open_cell(image_path, annotations, detect, detector, device, ignore_annotations)
    if classifier is None:
        from chromodesk.inference.classifier import Classifier

        classifier = Classifier(model, device=device)
    cell = classify_document(doc, image.gray, classifier)
    return AnalysisResult(doc, image, cell, source)
