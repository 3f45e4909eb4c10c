"""``chromodesk-train evaluate-detect``: the learned detector (and the classical one beside it)
against the VOC boxes of held-out cases, and the whole raw-image path end to end.

- ``ap50``, ``ap50_95``: all-point AP over the split's images (COCO's ten IoU levels for the latter);
- ``recall50``, ``precision50``, count errors: at the bundle's own score threshold (chosen on
  validation when it was trained), one-to-one matching at IoU >= 0.5;
- ``end_to_end_accuracy``: detect -> classify -> assign per cell, as ``chromodesk analyze``
  does on an image without annotation; a true chromosome counts when the detection matched
  to it one-to-one at IoU >= 0.5 carries its true label (so a miss, a merged box or a wrong
  label all count against it), over all true chromosomes; the boxes the detector scored between
  its ``doubt_floor`` and its threshold go in doubted, as in the app;
- ``seconds_per_image``: median wall time of detection alone (file decoding excluded).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from chromodesk.core.document import Karyotype
from chromodesk.core.imaging import load_gray
from chromodesk.core.voc import find_annotation, read_voc

from .data import _voc_images, case_of_image
from .detect_metrics import at_threshold, average_precision, match_one_to_one
from .evaluate import bundle_split

IOU_LEVELS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def _split_images(data: list[str], split: dict | None, part: str, limit: int) -> list[tuple[Path, str]]:
    out = []
    for root in map(Path, data):
        for p in _voc_images(root):
            key = f"{root.name}/{case_of_image(p.stem)}"
            # cases the split does not know were never trained on: they count as test
            if part == "all" or split is None or split.get(key, "test" if part == "test" else None) == part:
                out.append((p, root.name))
    if limit:
        out = out[:: max(1, len(out) // limit)][:limit]
    return out


def _end_to_end(gray: np.ndarray, path: Path, found: np.ndarray, truth: np.ndarray, labels: list[str | None],
                classifier, doubt: np.ndarray | None = None) -> tuple[int, int, np.ndarray]:
    """(correct, labelled truths, the boxes the classifier kept as chromosomes) for one image: the
    found boxes (with the detector's ``doubt`` about each, as ``pipeline.find_boxes`` gives it)
    classified and assigned as in the app."""
    from chromodesk.inference.detector import whole_pixel_boxes
    from chromodesk.pipeline import classify_document

    h, w = gray.shape
    doc = Karyotype(str(path), "", w, h)
    ids = []
    doubt = np.zeros(len(found)) if doubt is None else doubt
    for box, d in zip(whole_pixel_boxes(found, gray.shape), doubt):
        ids.append(doc.add(box, doubt=float(d)).id if not box.is_empty() else None)
    kept = [i for i, rid in enumerate(ids) if rid is not None]
    if kept:
        classify_document(doc, gray, classifier)
    shown = {i: doc.get(ids[i]) for i in kept}
    pairs = match_one_to_one(found[kept], truth) if kept else []
    correct = sum(1 for pi, ti in pairs if labels[ti] is not None and shown[kept[pi]].label == labels[ti]
                  and not getattr(shown[kept[pi]], "rejected", False))
    chromosomes = found[[i for i in kept if not shown[i].rejected]].reshape(-1, found.shape[1])
    return correct, sum(1 for lab in labels if lab is not None), chromosomes


def evaluate_detection(model: str | None, data: list[str], split: str = "test", split_file: str | None = None,
                       classifier_model: str | None = None, end_to_end: bool = True, classical: bool = True,
                       limit: int = 0, quiet: bool = False, threshold: float | None = None) -> dict:
    """``threshold``: the learned detector's score threshold instead of its bundle's (to choose
    one on the validation split; never on the test split)."""
    from chromodesk.core.detect import detect_chromosomes
    from chromodesk.inference.detector import DEFAULT_DETECTOR, Detector, doubt_of

    detector = Detector(model, device="cpu")
    learned_threshold = detector.meta.threshold if threshold is None else float(threshold)
    # the boxes the app takes in, doubted below the threshold (see ``Detector.detect_doubted``)
    meta = replace(detector.meta, threshold=learned_threshold)
    floor = learned_threshold if meta.doubt_floor is None else min(meta.doubt_floor, learned_threshold)
    model_path = Path(model) if model else DEFAULT_DETECTOR
    if split_file:
        split_map = json.loads(Path(split_file).read_text())
    else:
        from chromodesk.inference.bundle import DEFAULT_MODEL

        split_map = bundle_split(model_path) or bundle_split(Path(classifier_model) if classifier_model else DEFAULT_MODEL)
    images = _split_images(data, split_map, split, limit)
    if not images:
        raise ValueError(f"no images in the {split} split of {', '.join(data)}")
    classifier = None
    if end_to_end:
        from chromodesk.inference.classifier import Classifier

        classifier = Classifier(classifier_model, device="cpu")
    methods = {"learned": lambda g: detector.detect_array(g, threshold=0.05)}
    if classical:
        methods["classical"] = lambda g: np.array([b.as_list() + [1.0] for b in detect_chromosomes(g)], float).reshape(-1, 5)
    preds = {m: [] for m in methods}
    secs = {m: [] for m in methods}
    e2e = {m: [0, 0] for m in methods}
    after_reject = {m: [] for m in methods}
    truths = []
    for path, _src in tqdm(images, desc="evaluate-detect", unit="image", disable=quiet, mininterval=5.0):
        img = load_gray(path)
        ann = read_voc(find_annotation(path), (img.width, img.height))
        objs = [o for o in ann.objects if not o.box.is_empty()]
        truth = np.array([o.box.as_list() for o in objs], float).reshape(-1, 4)
        truths.append(truth)
        for m, fn in methods.items():
            t0 = time.perf_counter()
            found = fn(img.gray)
            secs[m].append(time.perf_counter() - t0)
            preds[m].append(found)
            if classifier is not None:
                kept = found[found[:, 4] >= (floor if m == "learned" else 0.0)]
                doubt = np.array([doubt_of(s, meta) for s in kept[:, 4]]) if m == "learned" else None
                c, n, chromosomes = _end_to_end(img.gray, path, kept, truth, [o.label for o in objs], classifier, doubt)
                e2e[m][0] += c
                e2e[m][1] += n
                after_reject[m].append(chromosomes)
    result = {"split": split, "n_images": len(images), "data": [str(d) for d in data], "model_id": detector.model_id,
              "threshold": learned_threshold, "doubt_floor": floor, "doubt_weight": meta.doubt_weight, "classifier": classifier.model_id if classifier else None, "methods": {}}
    for m in methods:
        thr = learned_threshold if m == "learned" else 0.0
        at = at_threshold(preds[m], truths, thr)
        row = {"ap50": average_precision(preds[m], truths, 0.5),
               "ap50_95": float(np.mean([average_precision(preds[m], truths, float(t)) for t in IOU_LEVELS])),
               "recall50": at["recall"], "precision50": at["precision"],
               "median_count_error": at["median_count_error"], "mean_count_error": at["mean_count_error"],
               "mean_signed_count_error": at["mean_signed_count_error"],
               "objects_per_image": float(np.mean([int((p[:, 4] >= thr).sum()) for p in preds[m]])),
               "true_per_image": float(np.mean([len(t) for t in truths])),
               "seconds_per_image": float(np.median(secs[m])), "n_images": len(images)}
        if classifier is not None:
            row["end_to_end_accuracy"] = e2e[m][0] / max(e2e[m][1], 1)
            row["end_to_end_chromosomes"] = e2e[m][1]
            # what the technician sees: the boxes left after the "not a chromosome" outcome
            shown = at_threshold([np.c_[a[:, :4], np.ones(len(a))] for a in after_reject[m]], truths, 0.5)
            row.update({f"{k}_after_reject": shown[k] for k in ("recall", "precision", "median_count_error",
                                                                "mean_count_error")})
        result["methods"][m] = row
    result.update(result["methods"]["learned"])  # the learned detector's figures at the top level
    return result


def print_detection_summary(result: dict) -> None:
    print(f"{result['n_images']} {result['split']} images, detector {result['model_id']} (score >= {result['threshold']:.2f})")
    for m, r in result["methods"].items():
        line = (f"  {m:9s} AP50 {r['ap50']:.4f}  AP50:95 {r['ap50_95']:.4f}  recall50 {r['recall50']:.4f}  "
                f"precision50 {r['precision50']:.4f}  |count error| median {r['median_count_error']:.1f} "
                f"mean {r['mean_count_error']:.2f}  {r['objects_per_image']:.1f} objects/image (true {r['true_per_image']:.1f})  "
                f"{r['seconds_per_image'] * 1000:.0f} ms/image")
        if "end_to_end_accuracy" in r:
            line += (f"  end-to-end {r['end_to_end_accuracy']:.4f}  after 'not a chromosome': recall "
                     f"{r['recall_after_reject']:.4f} precision {r['precision_after_reject']:.4f} "
                     f"|count error| median {r['median_count_error_after_reject']:.1f}")
        print(line)
