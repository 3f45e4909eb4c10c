"""``chromodesk bench``: per-stage timings on a real metaphase, medians after warm-up, with the
source report's own inference path timed on the same image as the baseline."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from chromodesk.bundled import samples_dir
from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.errors import InputError
from chromodesk.core.imaging import load_gray
from chromodesk.core.preprocess import enhance_image, preprocess_cell
from chromodesk.core.voc import find_annotation, read_voc

SAMPLES = samples_dir()


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline_report_path(gray: np.ndarray, boxes, repeats: int) -> dict:
    """The source report's inference: per crop NLM (h=10, 7, 21), resize to 224, 3 channels,
    ResNet at 224 px, one crop at a time. Random weights: only the time matters here."""
    import torch
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=24).eval()

    def run():
        with torch.inference_mode():
            for b in boxes:
                crop = gray[b.ymin : b.ymax, b.xmin : b.xmax]
                crop = cv2.fastNlMeansDenoising(crop, None, 10, 7, 21)
                crop = cv2.resize(crop, (224, 224))
                x = torch.from_numpy(np.repeat(crop[None, None], 3, axis=1)).float() / 255.0
                net(x)

    seconds = _median_time(run, max(1, repeats // 2))
    return {"baseline_cell_s": seconds, "baseline_crops_per_s": len(boxes) / seconds}


def run_bench(image: Path, annotations: Path | None, model: str | None, device: str, repeats: int,
              baseline: bool = True) -> dict:
    import torch

    from chromodesk.inference.classifier import Classifier
    from chromodesk.pipeline import analyze

    xml = annotations or find_annotation(image)
    if xml is None:
        raise InputError(image, "bench needs an image with its VOC boxes")
    t0 = time.perf_counter()
    classifier = Classifier(model, device=device)
    model_load_s = time.perf_counter() - t0
    cfg = classifier.preprocess
    img = load_gray(image)
    boxes = [o.box for o in read_voc(xml, (img.width, img.height)).objects]
    n = len(boxes)
    out: dict = {
        "image": str(image), "chromosomes": n, "device": str(classifier.device), "model_id": classifier.model_id,
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0], "torch": torch.__version__, "repeats": repeats,
        "model_load_s": model_load_s,
    }
    out["load_s"] = _median_time(lambda: load_gray(image), repeats)
    out["enhance_s"] = _median_time(lambda: enhance_image(img.gray, cfg), repeats)
    pre_s = _median_time(lambda: preprocess_cell(img.gray, boxes, cfg), repeats)
    out["preprocess_cell_s"] = pre_s
    out["preprocess_crops_per_s"] = n / pre_s
    out["preprocess_crops_per_s_excluding_denoise"] = n / max(pre_s - out["enhance_s"], 1e-9)
    crops = preprocess_cell(img.gray, boxes, cfg)

    # classifier throughput: bare forward pass vs the pipeline's predict, same batch size
    model_net = classifier.model
    tiles = 64 // max(1, n) + 1
    images64 = np.concatenate([crops.images] * tiles)[:64]
    feats64 = np.concatenate([crops.features] * tiles)[:64]
    for bs in (1, 16, 64):
        x = (torch.from_numpy(images64[:bs]).unsqueeze(1).float() / 127.5 - 1).to(classifier.device)
        f = torch.from_numpy(feats64[:bs]).to(classifier.device)

        def bare():  # the crop network(s) alone: a bundle with a companion runs both
            with torch.inference_mode():
                model_net(x, f)
                if classifier.companion is not None:
                    classifier.companion(x, f)
                if classifier.device.type == "cuda":
                    torch.cuda.synchronize()

        reps = repeats if bs > 1 else repeats * 4
        out[f"bare_forward_crops_per_s_b{bs}"] = bs / _median_time(bare, reps)
        saved = classifier.batch_size, classifier.flip_tta
        classifier.batch_size, classifier.flip_tta = bs, False
        pair = None if crops.companion_images is None else (
            np.concatenate([crops.companion_images] * tiles)[:bs], np.concatenate([crops.companion_features] * tiles)[:bs])
        out[f"classify_crops_per_s_b{bs}"] = bs / _median_time(
            lambda: classifier.predict_arrays(images64[:bs], feats64[:bs], companion=pair), reps)
        classifier.batch_size, classifier.flip_tta = saved
    out["classify_crops_per_s"] = out["classify_crops_per_s_b64"]
    out["classify_overhead_ratio_b64"] = out["bare_forward_crops_per_s_b64"] / out["classify_crops_per_s_b64"]
    out["classify_cell_with_tta_s"] = _median_time(lambda: classifier.predict(crops), repeats)
    out["masks_cell_s"] = None
    if classifier.segmenter is not None:  # the mask network's outlines for the whole cell (enhanced image given)
        from chromodesk.core.preprocess import mask_regions

        enhanced = enhance_image(img.gray, cfg)
        regions = mask_regions(boxes, cfg, img.width, img.height)
        out["masks_cell_s"] = _median_time(lambda: classifier.segmenter.masks(enhanced, boxes, regions), repeats)

    out["end_to_end_s"] = _median_time(lambda: analyze(image, xml, classifier=classifier), repeats)
    from chromodesk.core.detect import detect_chromosomes

    out["detect_classical_s"] = _median_time(lambda: detect_chromosomes(img.gray), repeats)
    out["detect_s"] = None
    from chromodesk.inference.detector import DEFAULT_DETECTOR, Detector

    if DEFAULT_DETECTOR.is_file():  # the learned detector: what `analyze` uses on an image without boxes
        detector = Detector(DEFAULT_DETECTOR, device=device)
        out["detector_id"], out["detector_load_s"] = detector.model_id, detector.load_seconds
        out["detect_s"] = _median_time(lambda: detector.detect(img.gray), repeats)
        out["detected_boxes"] = len(detector.detect(img.gray))
        out["end_to_end_raw_image_s"] = _median_time(
            lambda: analyze(image, classifier=classifier, detector=detector, ignore_annotations=True), repeats)
    if baseline:
        out.update(baseline_report_path(img.gray, boxes, repeats))
        out["speedup_vs_report_path"] = out["baseline_cell_s"] / out["end_to_end_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def format_table(r: dict) -> str:
    rows = [
        ("device", r["device"]), ("chromosomes in cell", r["chromosomes"]),
        ("model load (once)", f"{r['model_load_s'] * 1000:.0f} ms"),
        ("image load", f"{r['load_s'] * 1000:.1f} ms"),
        ("denoise + CLAHE (per image)", f"{r['enhance_s'] * 1000:.1f} ms"),
        ("preprocessing per cell", f"{r['preprocess_cell_s'] * 1000:.1f} ms = {r['preprocess_crops_per_s']:.0f} crops/s"),
        ("classifier, bare forward b1/b16/b64", " / ".join(f"{r[f'bare_forward_crops_per_s_b{b}']:.0f}" for b in (1, 16, 64)) + " crops/s"),
        ("classifier, pipeline b1/b16/b64", " / ".join(f"{r[f'classify_crops_per_s_b{b}']:.0f}" for b in (1, 16, 64)) + " crops/s"),
        ("classify one cell (with flip TTA)", f"{r['classify_cell_with_tta_s'] * 1000:.0f} ms"),
        ("outlines for one cell (mask network, mirror TTA)",
         f"{r['masks_cell_s'] * 1000:.0f} ms" if r.get("masks_cell_s") is not None else "no mask bundle"),
        ("end to end, given boxes", f"{r['end_to_end_s']:.3f} s"),
    ]
    rows.append(("classical detection per image", f"{r['detect_classical_s'] * 1000:.0f} ms"))
    if r.get("detect_s") is not None:
        rows += [("learned detection per image", f"{r['detect_s'] * 1000:.0f} ms ({r['detected_boxes']} boxes)"),
                 ("end to end from the raw image (detect, classify, assign)", f"{r['end_to_end_raw_image_s']:.3f} s")]
    if "baseline_cell_s" in r:
        rows += [("source report's path (per-crop NLM, 224 px, batch 1)", f"{r['baseline_cell_s']:.3f} s per cell"),
                 ("speed-up over it", f"{r['speedup_vs_report_path']:.1f}x")]
    rows.append(("peak memory (RSS)", f"{r['peak_rss_mb']:.0f} MB"))
    return "| stage | median |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main(args) -> int:
    image = Path(args.image) if args.image else SAMPLES / "103201.jpg"
    try:
        result = run_bench(image, Path(args.annotations) if args.annotations else None, args.model, args.device,
                           args.repeats)
    except (InputError, RuntimeError) as exc:
        print(f"chromodesk bench: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0
