"""``chromodesk``: headless entry points.

    chromodesk analyze IMAGE... [--annotations XML] [--model BUNDLE] [--device auto|cpu|cuda]
                       [--detector BUNDLE|classical] [--out DIR] [--formats csv,karyogram,annotated,voc] [--json]
    chromodesk bench [--device ...] [--json OUT]
    chromodesk report FOLDER|IMAGE... [--out case.pdf] [--json OUT] [--csv OUT]
    chromodesk [IMAGE]            # no sub-command: the desktop app

Exit codes: 0 ok; 1 some images failed (each with one line on stderr, the rest still
processed); 2 bad command line or unusable model; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from chromodesk.core.errors import InputError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("csv", "karyogram", "annotated", "voc")


def summary_line(result) -> str:
    cell = result.cell
    flags = [f for f in (cell.flags if cell else []) if f["type"] != "total"]
    names = {"gain": "+{label} ({count} copies)", "loss": "-{label} ({count} copy)", "sex": "sex chromosomes {label}"}
    anomalies = ", ".join(names[f["type"]].format(**f) for f in flags if f["type"] in names) or "none"
    labels = " ".join(f"{r.id}={r.label}" for r in result.doc)
    iscn = cell.iscn if cell else "?"
    return (f"{Path(result.doc.image_path).name}: {len(result.doc)} chromosomes ({result.boxes_source}); "
            f"suggested karyotype {iscn}; anomalies: {anomalies}; cell confidence "
            f"{cell.confidence:.2f}\n  labels: {labels}")


def cmd_analyze(args) -> int:
    from chromodesk.core.export import export_all
    from chromodesk.inference.classifier import Classifier
    from chromodesk.pipeline import analyze

    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else []
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        print(f"chromodesk: unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}", file=sys.stderr)
        return EXIT_USAGE
    if args.annotations and len(args.images) > 1:
        print("chromodesk: --annotations applies to a single image", file=sys.stderr)
        return EXIT_USAGE
    try:
        classifier = Classifier(args.model, device=args.device)
        detector = None
        if args.detector and args.detector != "classical":
            from chromodesk.inference.detector import Detector

            detector = Detector(args.detector, device=args.device)
        elif args.detector == "classical":
            detector = "classical"
    except (InputError, RuntimeError) as exc:
        print(f"chromodesk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.out and formats:
        from chromodesk.core.export import output_folder_problem

        problem = output_folder_problem(Path(args.out))
        if problem:
            print(f"chromodesk: {InputError(args.out, problem)}", file=sys.stderr)
            return EXIT_USAGE
    status = EXIT_OK
    for image in args.images:
        try:
            result = analyze(image, args.annotations, classifier=classifier, device=args.device, detector=detector,
                             ignore_annotations=args.detect)
            written = {}
            if args.out and formats:
                written = export_all(result.doc, result.image.gray, Path(args.out), formats,
                                     iscn=result.cell.iscn if result.cell else None)
        except (InputError, ValueError) as exc:  # ValueError: an export refused (e.g. would overwrite the source XML)
            print(f"chromodesk: {exc}", file=sys.stderr)
            status = EXIT_SOME_FAILED
            continue
        except Exception as exc:  # noqa: BLE001 — whatever one image does, the rest of the batch is analysed
            detail = (str(exc).splitlines() or [""])[0]
            print(f"chromodesk: {image}: unexpected {type(exc).__name__} ({detail}); please report it with this file",
                  file=sys.stderr)
            status = EXIT_SOME_FAILED
            continue
        for warning in result.doc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.json:
            payload = result.to_json()
            payload["outputs"] = {k: str(v) for k, v in written.items()}
            print(json.dumps(payload), flush=True)
        else:
            print(summary_line(result), flush=True)
            for kind, path in written.items():
                print(f"  wrote {kind}: {path}")
    return status


def cmd_bench(args) -> int:
    from chromodesk.bench import main as bench_main

    return bench_main(args)


def version_text() -> str:
    """App and bundled model versions, read from the bundles' JSON (no torch needed)."""
    from chromodesk import __version__

    from chromodesk.bundled import models_dir

    models = models_dir()
    parts = [f"ChromoDesk {__version__}"]
    for name, what in (("chromodesk-resnet18.json", "classifier"), ("chromodesk-detector.json", "detector")):
        try:
            parts.append(f"{what} {json.loads((models / name).read_text())['model_id']}")
        except (OSError, ValueError, KeyError, TypeError):
            parts.append(f"{what}: not installed")
    return "; ".join(parts)


def cmd_report(args) -> int:
    from chromodesk.report import main as report_main

    return report_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromodesk", description="ChromoDesk karyotyping (headless commands).")
    sub = parser.add_subparsers(dest="command")
    a = sub.add_parser("analyze", help="classify every chromosome of metaphase images and export results")
    a.add_argument("images", nargs="+", metavar="IMAGE")
    a.add_argument("--annotations", help="VOC XML (default: IMAGE.xml beside it or annotations/NAME.xml)")
    a.add_argument("--model", help="model bundle .json (default: the shipped model)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    a.add_argument("--detector", help="for images without annotation: a detector bundle .json, or 'classical' "
                                      "(default: the shipped learned detector)")
    a.add_argument("--detect", action="store_true",
                   help="find the chromosomes with the detector even where an annotation file exists (a raw image)")
    a.add_argument("--out", help="folder for exported files")
    a.add_argument("--formats", default="csv,karyogram,annotated,voc", help="comma list of: " + ",".join(FORMATS))
    a.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    a.set_defaults(func=cmd_analyze)
    b = sub.add_parser("bench", help="time every stage on a real metaphase (bundled sample by default)")
    b.add_argument("image", nargs="?", help="image (default: the bundled sample)")
    b.add_argument("--annotations")
    b.add_argument("--model")
    b.add_argument("--device", default="auto")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--json", help="write the results here")
    b.set_defaults(func=cmd_bench)
    r = sub.add_parser("report", help="a case (folders or images of one sample) as karyotype summary, CSV and PDF")
    r.add_argument("paths", nargs="+", metavar="FOLDER|IMAGE")
    r.add_argument("--out", help="the PDF report")
    r.add_argument("--json", help="the case summary as JSON")
    r.add_argument("--csv", help="one row per cell")
    r.add_argument("--case-id", help="case name (default: the folder's)")
    r.add_argument("--karyograms", type=int, default=2, help="karyograms in the report (analysed cells first)")
    r.add_argument("--model")
    r.add_argument("--device", default="auto")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        print(version_text())
        return EXIT_OK
    if not argv or (argv[0] not in ("analyze", "bench", "report", "-h", "--help")):
        from chromodesk.ui.app import main as gui_main  # the desktop app

        return gui_main(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("chromodesk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `chromodesk analyze ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
