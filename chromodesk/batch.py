"""``chromodesk analyze`` over many images: folder trees, worker processes, resuming, one summary.

Each image is analysed by ``analyze_one``, in this process or in one of ``--workers``
processes (each loads the models once). Whatever one image does, the others are analysed:
its failure is one line, and the exit code says some failed. With ``--out``, an image whose
exports all exist and are newer than the image and its annotation is skipped (a killed run
picks up where it stopped), and ``summary.csv`` lists every image of the run.
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.errors import InputError
from chromodesk.core.imaging import SUPPORTED_SUFFIXES

SUMMARY_COLUMNS = ("image", "status", "chromosomes", "karyotype", "anomalies", "cell_confidence", "boxes_source",
                   "problem")


@dataclass
class Job:
    image: Path
    out_dir: Path | None  # where this image's exports go (a folder tree is mirrored under --out)
    annotations: str | None = None


@dataclass
class Outcome:
    image: str
    payload: dict | None = None  # analyze --json's object
    text: str = ""  # the human summary line
    warnings: list[str] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)
    error: str = ""
    skipped: bool = False


def collect_jobs(paths: list[str], out: str | None, annotations: str | None = None) -> list[Job]:
    """Images as given, and every image under a given folder (sorted, our own exports left out)."""
    jobs: list[Job] = []
    out_dir = Path(out) if out else None
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for image in sorted(q for q in p.rglob("*") if q.suffix.lower() in SUPPORTED_SUFFIXES and q.is_file()
                                and not q.name.endswith((".karyogram.png", ".annotated.png"))):
                if out_dir is not None and out_dir.resolve() in image.resolve().parents:
                    continue  # a previous run's exports inside the tree
                sub = image.parent.relative_to(p)
                jobs.append(Job(image, out_dir / p.name / sub if out_dir else None))
        else:
            jobs.append(Job(p, out_dir, annotations))
    return jobs


def is_done(job: Job, formats: list[str]) -> bool:
    """Every export of the image exists and is newer than the image (and its annotation)."""
    if job.out_dir is None or not formats:
        return False
    from chromodesk.core.export import export_targets
    from chromodesk.core.voc import find_annotation

    try:
        sources = [job.image.stat().st_mtime]
        xml = Path(job.annotations) if job.annotations else find_annotation(job.image)
        if xml is not None:
            sources.append(xml.stat().st_mtime)
        targets = export_targets(job.out_dir, job.image.stem)
        outputs = [targets[f].stat().st_mtime for f in formats]
    except OSError:
        return False
    return min(outputs) >= max(sources)


# -- one image ------------------------------------------------------------------------------------
def analyze_one(job: Job, classifier, detector, device: str, detect: bool, formats: list[str]) -> Outcome:
    from chromodesk.core.export import export_all
    from chromodesk.pipeline import analyze

    out = Outcome(str(job.image))
    try:
        result = analyze(job.image, job.annotations, classifier=classifier, device=device, detector=detector,
                         ignore_annotations=detect)
        written = {}
        if job.out_dir is not None and formats:
            written = export_all(result.doc, result.image.gray, job.out_dir, formats,
                                 iscn=result.cell.iscn if result.cell else None)
    except (InputError, ValueError) as exc:  # ValueError: an export refused (e.g. would overwrite the source XML)
        out.error = str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 — whatever one image does, the rest of the batch is analysed
        detail = (str(exc).splitlines() or [""])[0]
        out.error = f"{job.image}: unexpected {type(exc).__name__} ({detail}); please report it with this file"
        return out
    out.warnings = list(result.doc.warnings)
    out.written = {k: str(v) for k, v in written.items()}
    out.payload = result.to_json()
    out.payload["outputs"] = out.written
    out.text = summary_line(result)
    return out


def summary_line(result) -> str:
    cell = result.cell
    anomalies = _anomalies(cell.flags if cell else [])
    labels = " ".join(f"{r.id}={r.label}" for r in result.doc)
    iscn = cell.iscn if cell else "?"
    return (f"{Path(result.doc.image_path).name}: {len(result.doc)} chromosomes ({result.boxes_source}); "
            f"suggested karyotype {iscn}; anomalies: {anomalies}; cell confidence "
            f"{cell.confidence:.2f}\n  labels: {labels}")


def _anomalies(flags: list[dict]) -> str:
    names = {"gain": "+{label} ({count} copies)", "loss": "-{label} ({count} copy)", "sex": "sex chromosomes {label}"}
    return ", ".join(names[f["type"]].format(**f) for f in flags if f["type"] in names) or "none"


# -- worker processes -----------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(model, detector_arg, device: str, threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)  # the cores are shared between the workers
    cv2.setNumThreads(threads)
    _WORKER.update(load_models(model, detector_arg, device))


def check_models(model, detector_arg) -> None:
    """What the worker processes will load, checked here without torch (importing it would cost
    this process seconds for nothing): the metadata reads and names weights that are there.
    The workers verify checksums and shapes when they load."""
    from chromodesk.bundled import models_dir
    from chromodesk.core.limits import MAX_BUNDLE_JSON_BYTES
    from chromodesk.core.safe_read import read_json, regular_file

    bundles = [Path(model) if model else models_dir() / "chromodesk-resnet18.json"]
    if detector_arg and detector_arg != "classical":
        bundles.append(Path(detector_arg))
    for given in bundles:
        path = given.with_suffix(".json") if given.suffix in ("", ".safetensors") else given
        if path.suffix != ".json":
            raise InputError(given, "not a ChromoDesk model bundle (expected NAME.json with NAME.safetensors beside it)")
        meta = read_json(path, MAX_BUNDLE_JSON_BYTES, "model metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("weights_file"), str):
            raise InputError(path, "model metadata names no weights file")
        regular_file(path.parent / Path(meta["weights_file"]).name, "model weights file")


def _run_in_worker(job: Job, device: str, detect: bool, formats: list[str]) -> Outcome:
    return analyze_one(job, _WORKER["classifier"], _WORKER["detector"], device, detect, formats)


def load_models(model, detector_arg, device: str) -> dict:
    """The classifier and the detector choice, loaded once per process (InputError if unusable)."""
    from chromodesk.inference.classifier import Classifier

    detector = None
    classifier = Classifier(model, device=device)
    if detector_arg == "classical":
        detector = "classical"
    elif detector_arg:
        from chromodesk.inference.detector import Detector

        detector = Detector(detector_arg, device=device)
    return {"classifier": classifier, "detector": detector}


def worker_count(args, todo: list) -> int:
    return max(1, min(int(args.workers or 1), len(todo) or 1))


def run_jobs(jobs: list[Job], models: dict | None, args, formats: list[str]):
    """Outcomes in the order of ``jobs`` (skipped ones included), computed here or in workers."""
    from concurrent.futures.process import BrokenProcessPool

    todo = [j for j in jobs if not is_done(j, formats)]
    skip = {id(j) for j in jobs} - {id(j) for j in todo}
    workers = worker_count(args, todo)
    if workers == 1:
        models = models or load_models(args.model, args.detector, args.device)  # e.g. all but one up to date
        results = (analyze_one(j, models["classifier"], models["detector"], args.device, args.detect, formats)
                   for j in todo)
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                   initargs=(args.model, args.detector, args.device, threads))
        results = pool.map(_run_in_worker, todo, *zip(*[(args.device, args.detect, formats)] * len(todo)))
    it = iter(results)
    try:
        for job in jobs:
            yield Outcome(str(job.image), skipped=True) if id(job) in skip else next(it)
    except BrokenProcessPool:  # a worker could not load the models (or was killed): say so once
        raise InputError(args.model or "the shipped model", "the worker processes could not load the models "
                         "(run with --workers 1 to see why)") from None
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)


def write_summary(out: Path, outcomes: list[Outcome]) -> Path:
    """``summary.csv`` under ``--out``: one row per image of the run; a skipped image keeps the row
    of the run that analysed it."""
    previous = {}
    path = out / "summary.csv"
    if path.is_file():
        try:
            previous = {row["image"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}
        except (OSError, csv.Error, KeyError, UnicodeDecodeError):
            previous = {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    for o in outcomes:
        if o.skipped and o.image in previous:
            row = {k: previous[o.image].get(k, "") for k in SUMMARY_COLUMNS}
        elif o.payload is not None:
            p = o.payload
            row = {"image": o.image, "status": "analysed", "chromosomes": p["count"], "karyotype": p.get("iscn", ""),
                   "anomalies": _anomalies(p.get("flags", [])), "boxes_source": p["boxes_source"],
                   "cell_confidence": f"{p['cell_confidence']:.3f}" if p.get("cell_confidence") is not None else "",
                   "problem": ""}
        else:
            row = {"image": o.image, "status": "skipped (exports up to date)" if o.skipped else "failed",
                   "problem": o.error}
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())
