"""``chromodesk``: headless entry points.

    chromodesk analyze IMAGE|FOLDER... [--workers N] [--annotations XML] [--model BUNDLE] [--device auto|cpu|cuda]
                       [--detector BUNDLE|classical] [--out DIR] [--formats csv,karyogram,annotated,voc,outlines] [--json]
    chromodesk bench [--device ...] [--json OUT]
    chromodesk report FOLDER|IMAGE... [--out case.pdf] [--json OUT] [--csv OUT]
    chromodesk serve [--host 127.0.0.1] [--port 8000] [--model BUNDLE]   # HTTP API + web page
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
FORMATS = ("csv", "karyogram", "annotated", "voc", "outlines")


def cmd_analyze(args) -> int:
    from chromodesk.batch import check_models, collect_jobs, load_models, run_jobs, write_summary

    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else []
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        print(f"chromodesk: unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}", file=sys.stderr)
        return EXIT_USAGE
    if args.annotations and (len(args.images) > 1 or Path(args.images[0]).is_dir()):
        print("chromodesk: --annotations applies to a single image", file=sys.stderr)
        return EXIT_USAGE
    if args.workers < 1:
        print("chromodesk: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.out and formats:
        from chromodesk.core.export import output_folder_problem

        problem = output_folder_problem(Path(args.out))
        if problem:
            print(f"chromodesk: {InputError(args.out, problem)}", file=sys.stderr)
            return EXIT_USAGE
    jobs = collect_jobs(args.images, args.out if formats else None, args.annotations)
    if not jobs:
        print(f"chromodesk: no images (JPEG, PNG, TIFF, BMP) in {' '.join(args.images)}", file=sys.stderr)
        return EXIT_USAGE
    try:  # an unusable model is one line before any image
        if args.workers > 1 and len(jobs) > 1:
            check_models(args.model, args.detector)  # the workers load them; torch stays out of this process
            models = None
        else:
            models = load_models(args.model, args.detector, args.device)
    except (InputError, RuntimeError) as exc:
        print(f"chromodesk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from tqdm import tqdm

    status, outcomes = EXIT_OK, []
    bar = tqdm(total=len(jobs), unit="image", disable=len(jobs) < 2 or None, file=sys.stderr, leave=False)
    try:
        for o in run_jobs(jobs, models, args, formats):
            outcomes.append(o)
            status = _report(o, args, bar, status)
    except InputError as exc:  # the worker processes could not start
        bar.close()
        print(f"chromodesk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar.close()
    skipped = sum(o.skipped for o in outcomes)
    if skipped:
        print(f"{skipped} image(s) skipped: their exports are newer than the image", file=sys.stderr)
    if args.out and formats and len(jobs) > 1:
        write_summary(Path(args.out), outcomes)
    return status


def _report(o, args, bar, status: int) -> int:
    """One image's lines: its result on stdout, its warnings or its one-line error on stderr."""
    bar.update()
    if o.skipped:
        return status
    if o.error:
        bar.write(f"chromodesk: {o.error}", file=sys.stderr)
        return EXIT_SOME_FAILED
    for warning in o.warnings:
        bar.write(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(o.payload), flush=True)
    else:
        print(o.text, flush=True)
        for kind, path in o.written.items():
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
    for name, what in (("chromodesk-resnet18.json", "classifier"), ("chromodesk-detector.json", "detector"),
                       ("chromodesk-orientation.json", "orientation"), ("chromodesk-masks.json", "masks")):
        try:
            meta = json.loads((models / name).read_text())
            other = meta.get("companion") or {}
            with_other = f" with companion {json.loads((models / other['bundle']).read_text())['model_id']}" if other else ""
            parts.append(f"{what} {meta['model_id']}{with_other}")
        except (OSError, ValueError, KeyError, TypeError):
            parts.append(f"{what}: not installed")
    return "; ".join(parts)


def cmd_report(args) -> int:
    from chromodesk.report import main as report_main

    return report_main(args)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from chromodesk.server import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        print(f"chromodesk: serve needs FastAPI, uvicorn and python-multipart ({exc})", file=sys.stderr)
        return EXIT_USAGE
    loopback = args.host in LOOPBACK_HOSTS
    if not loopback:
        print(f"chromodesk: warning: listening on {args.host}: anyone who can reach this machine can upload "
              "images and download results (there is no login)", file=sys.stderr)
    try:  # the models are loaded here, once, before the port opens
        app = create_app(model=args.model, device=args.device, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    except (InputError, RuntimeError) as exc:
        print(f"chromodesk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    uvicorn.run(app, host=args.host, port=args.port)  # prints the address; Ctrl+C stops it
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromodesk", description="ChromoDesk karyotyping (headless commands).")
    sub = parser.add_subparsers(dest="command")
    a = sub.add_parser("analyze", help="classify every chromosome of metaphase images and export results")
    a.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                   help="images, or folders searched for images (exports mirror the tree under --out)")
    a.add_argument("--annotations", help="VOC XML (default: IMAGE.xml beside it or annotations/NAME.xml)")
    a.add_argument("--model", help="model bundle .json (default: the shipped model)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    a.add_argument("--detector", help="for images without annotation: a detector bundle .json, or 'classical' "
                                      "(default: the shipped learned detector)")
    a.add_argument("--detect", action="store_true",
                   help="find the chromosomes with the detector even where an annotation file exists (a raw image)")
    a.add_argument("--out", help="folder for exported files")
    a.add_argument("--formats", default="csv,karyogram,annotated,voc,outlines", help="comma list of: " + ",".join(FORMATS))
    a.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    a.add_argument("--workers", type=int, default=1,
                   help="processes analysing images side by side (each loads the models once)")
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
    r.add_argument("--detect", action="store_true",
                   help="find the chromosomes with the detector even where annotation files exist (raw images)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)
    s = sub.add_parser("serve", help="the analysis as a local web service and web page (http://127.0.0.1:8000/)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--model", help="model bundle .json (default: the shipped model)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    s.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        print(version_text())
        return EXIT_OK
    if not argv or (argv[0] not in ("analyze", "bench", "report", "serve", "-h", "--help")):
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
