"""``chromodesk-train``: fit, grid, evaluate, calibrate, context, detect, evaluate-detect. Bad input -> one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from chromodesk.core.errors import InputError

from .data import load_data


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="PATH[:WEIGHT]",
                   help="VOC metaphase folders or crop folders with labels.csv; WEIGHT = sampling weight per epoch")
    p.add_argument("--out", required=True, help="run folder (checkpoint, split, reports, bundle)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--schedule", default="step", choices=["step", "cosine", "onecycle", "cosine-time"])
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="minutes of training (evaluation not counted); stop and export after this long")
    p.add_argument("--epoch-crops", type=int, default=0,
                   help="crops per epoch, drawn afresh each epoch (0 = the whole training split): shorter epochs, more curve points")
    p.add_argument("--max-train", type=int, default=0, help="cap on training crops (quick experiments)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--outlines", action="store_true",
                   help="cut each metaphase crop inside the shipped mask network's outline (neighbours left out)")
    p.add_argument("--straighten", action="store_true",
                   help="straighten bent chromosomes along their centre line in each crop (training and inference)")
    p.add_argument("--init", default="", metavar="BUNDLE",
                   help="start from this model bundle's weights (fine-tuning) instead of random ones")
    p.add_argument("--no-test-curve", action="store_true", help="skip the per-epoch test evaluation (faster)")
    p.add_argument("--quiet", action="store_true")


def _configs(args):
    from chromodesk.core.preprocess import PreprocessConfig

    from .augment import AugmentConfig
    from .fit import TrainConfig

    pre = PreprocessConfig(size=args.input_size, outlines=args.outlines, straighten=args.straighten)
    cfg = TrainConfig(arch=args.arch, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
                      weight_decay=args.weight_decay, epochs=args.epochs, schedule=args.schedule,
                      patience=args.patience, label_smoothing=args.label_smoothing, seed=args.seed,
                      threads=args.threads, time_budget_min=args.time_budget, epoch_crops=args.epoch_crops, max_train=args.max_train,
                      augment=AugmentConfig(enabled=not args.no_augment),
                      eval_test_each_epoch=not args.no_test_curve, init_from=args.init)
    return pre, cfg


def cmd_fit(args) -> int:
    from .fit import fit

    pre, cfg = _configs(args)
    data, weights = load_data(args.data, pre, args.quiet)
    cfg.source_weights = weights
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:  # launched by torchrun
        import torch.distributed as dist

        dist.init_process_group("nccl" if _cuda() else "gloo")
        rank = dist.get_rank()
    try:
        metrics = fit(data, cfg, pre, args.out, resume=args.resume, rank=rank, world=world, quiet=args.quiet)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        _print_summary(metrics, Path(args.out))
        if args.context:  # the crop network is final: fit its cell-context stage into the same bundle
            from .context import fit_context_bundle

            bundle = Path(args.out) / "model.json"
            result = fit_context_bundle(str(bundle), args.data, str(bundle), quiet=args.quiet)
            print(f"cell-context stage: validation {result['val_accuracy_crop_network']:.4f} -> "
                  f"{result['val_accuracy_with_context']:.4f}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _print_summary(metrics: dict, run: Path) -> None:
    for key, m in metrics.items():
        if isinstance(m, dict) and "accuracy" in m:
            print(f"{key}: {m['n_chromosomes']} chromosomes in {m['n_cells']} cells: "
                  f"accuracy {m['accuracy']:.4f}, all-correct cells {m['cell_accuracy']:.4f}")
    print(f"bundle: {run / 'model.json'}")


def cmd_grid(args) -> int:
    from .grid import run_grid

    pre, cfg = _configs(args)
    data, weights = load_data(args.data, pre, args.quiet)
    cfg.source_weights = weights
    rows = run_grid(data, cfg, pre, Path(args.out), optimizers=args.optimizers, lrs=args.lrs,
                    archs=args.archs or [cfg.arch], quiet=args.quiet)
    for row in rows:
        print(json.dumps(row))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    result = evaluate(args.model, args.data, split=args.split, split_file=args.split_file,
                      assign=not args.no_assign, quiet=args.quiet)
    text = json.dumps(result, indent=1)
    if args.json:
        from chromodesk.core.atomic import atomic_write_text

        atomic_write_text(args.json, text)
    for key in ("accuracy", "cell_accuracy", "assigned_accuracy", "assigned_cell_accuracy",
                "abnormal_sensitivity", "abnormal_specificity"):
        if key in result:
            print(f"{key}: {result[key]:.4f}" if isinstance(result[key], float) else f"{key}: {result[key]}")
    for src, m in result.get("sources", {}).items():
        print(f"  {src}: {m['n_chromosomes']} chromosomes / {m['n_cells']} cells, accuracy {m['accuracy']:.4f} "
              f"(crop network alone {m['crop_accuracy']:.4f}), cells all correct {m['cell_accuracy']:.4f}" +
              (f"; assigned {m['assigned_accuracy']:.4f} / {m['assigned_cell_accuracy']:.4f}" if "assigned_accuracy" in m else ""))
    print(f"n_chromosomes: {result['n_chromosomes']}, n_cells: {result['n_cells']}, seconds: {result['seconds']:.1f}")
    return 0


def cmd_calibrate(args) -> int:
    from chromodesk.core.atomic import atomic_write_text

    from .evaluate import calibrate

    result = calibrate(args.model, args.data, quiet=args.quiet, min_specificity=args.min_specificity)
    print(f"chosen: {result['chosen']}  (on {result['n_cells']} development cells: sensitivity "
          f"{result['chosen_row']['abnormal_sensitivity']:.3f}, specificity {result['chosen_row']['abnormal_specificity']:.3f})")
    if not result["min_specificity_met"]:
        print(f"note: no setting reached specificity {result['min_specificity']:.2f}; chose the most sensitive, then most specific")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


def cmd_context(args) -> int:
    from chromodesk.inference.cell_context import ContextConfig

    from .context import ContextTrainConfig, app_penalties, fit_context_bundle

    assignment = None if args.no_assignment else app_penalties()
    cfg = ContextTrainConfig(epochs=args.epochs, aug_passes=args.aug_passes, seed=args.seed,
                             model=ContextConfig(dim=args.dim, layers=args.layers, members=args.members,
                                                 assignment=assignment, assignment_members=args.assignment_members))
    result = fit_context_bundle(args.model, args.data, args.out, cfg, quiet=args.quiet, companion=args.companion)
    print(json.dumps({k: result[k] for k in ("bundle", "val_accuracy_crop_network", "val_accuracy_with_context",
                                             "seconds")}))
    return 0


def _split_for(split_file: str | None) -> dict:
    """The case split: a run's split.json, or the shipped classifier's (one split for every model)."""
    from chromodesk.inference.bundle import DEFAULT_MODEL

    path = Path(split_file) if split_file else DEFAULT_MODEL.with_suffix(".split.json")
    if not path.is_file():
        raise InputError(path, "split file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(path, f"split file is not valid JSON ({exc})") from None


def cmd_detect(args) -> int:
    from .detect_data import DetectAugment
    from .detect_fit import DetectTrainConfig, fit_detector

    run = Path(args.out)
    split = json.loads((run / "split.json").read_text()) if args.resume and (run / "split.json").is_file() else _split_for(args.split_file)
    cfg = DetectTrainConfig(width=args.width, scale=args.scale, batch_size=args.batch_size, lr=args.lr,
                            epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
                            time_budget_min=args.time_budget, patience=args.patience, seed=args.seed,
                            threads=args.threads, twin=args.twin, init=args.init or "",
                            augment=DetectAugment(patch=args.patch, paste_prob=args.paste_prob,
                                                  centre_paste=args.centre_paste, enabled=not args.no_augment))
    metrics = fit_detector(args.data, cfg, run, split, resume=args.resume, quiet=args.quiet)
    b = metrics["val_at_threshold"]
    print(f"validation: AP50 {metrics['val_ap50']:.4f}, recall {b['recall']:.4f}, precision {b['precision']:.4f} "
          f"at score {b['threshold']:.2f}; bundle: {run / 'detector.json'}")
    return 0


def cmd_evaluate_detect(args) -> int:
    from chromodesk.core.atomic import atomic_write_text

    from .detect_eval import evaluate_detection, print_detection_summary

    result = evaluate_detection(args.model, args.data, split=args.split, split_file=args.split_file,
                                classifier_model=args.classifier, end_to_end=not args.no_classify,
                                classical=not args.no_classical, limit=args.limit, quiet=args.quiet,
                                threshold=args.threshold)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    print_detection_summary(result)
    return 0


def cmd_reject(args) -> int:
    from .reject import RejectTrainConfig, fit_reject_bundle

    cfg = RejectTrainConfig(kind=args.kind, hidden=args.hidden, epochs=args.epochs, max_positive_reject=args.max_positive_reject,
                            max_train_images=args.max_train_images, max_eval_images=args.max_eval_images, seed=args.seed,
                            box_features=not args.no_box_features, max_negative_cover=args.max_negative_cover)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = fit_reject_bundle(args.model, args.data, args.out, cfg, detector=args.detector,
                               evaluate_test=not args.no_test, quiet=args.quiet, workers=args.workers)
    for part in ("val", "test"):
        if part in result:
            r = result[part]
            print(f"{part}: empty boxes rejected {r['empty_boxes_rejected']:.4f} (n={r['empty_boxes_n']}), "
                  f"chromosomes rejected {r['chromosomes_rejected']:.4f} (n={r['chromosomes_n']}), accuracy "
                  f"{r['accuracy_without_reject']:.4f} -> {r['accuracy_with_reject']:.4f}; by kind: "
                  + ", ".join(f"{k} {v['rejected']:.3f}" for k, v in r["negatives"].items()))
            if r.get("nothing_inside_n"):
                print(f"{part}: boxes with nothing inside (background, debris, nuclei) rejected "
                      f"{r['nothing_inside_rejected']:.4f} (n={r['nothing_inside_n']})")
    print(f"bundle: {result['bundle']} (threshold {result['threshold']:.3f}, {result['seconds']:.0f} s)")
    return 0


def cmd_masks(args) -> int:
    from .masks import MaskTrainConfig, fit_masks

    run = Path(args.out)
    split = json.loads((run / "split.json").read_text()) if args.resume and (run / "split.json").is_file() else _split_for(args.split_file)
    run.mkdir(parents=True, exist_ok=True)
    (run / "split.json").write_text(json.dumps(split, indent=0, sort_keys=True))
    cfg = MaskTrainConfig(batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
                          samples_per_epoch=args.samples_per_epoch, gband_share=args.gband_share if args.gband else 0.0,
                          gband_images=tuple(args.gband_images), seed=args.seed, threads=args.threads)
    result = fit_masks(args.polygons, args.gband, split, cfg, run, resume=args.resume, quiet=args.quiet)
    print(f"bundle: {result['bundle']} (threshold {result['threshold']:.2f}, chosen on validation cells)")
    return 0


def cmd_evaluate_masks(args) -> int:
    from chromodesk.core.atomic import atomic_write_text

    from .masks import evaluate_masks

    result = evaluate_masks(args.model, args.polygons, args.gband, _split_for(args.split_file), args.split,
                            args.synthetic, quiet=args.quiet)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    for name in ("polygon_set", "gband_synthetic"):
        if name in result:
            net, base = result[name]["network"], result[name]["threshold_largest_component"]
            print(f"{name}: mask IoU isolated {net['isolated']} (threshold {base['isolated']}), touching/crossing "
                  f"{net['touching_or_crossing']} (threshold {base['touching_or_crossing']}); "
                  f"n = {net['n_isolated']} + {net['n_touching_or_crossing']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chromodesk-train", description="Train and evaluate ChromoDesk classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train one model")
    _add_train_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--context", action="store_true",
                   help="then fit the cell-context stage (as `context` does) into OUT/model.json")
    p.set_defaults(func=cmd_fit)
    g = sub.add_parser("grid", help="the report's grid: optimizers x learning rates (x architectures)")
    _add_train_args(g)
    g.add_argument("--optimizers", nargs="+", default=["adam", "sgd", "rmsprop"])
    g.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 1e-3, 1e-2])
    g.add_argument("--archs", nargs="+", default=None)
    g.set_defaults(func=cmd_grid)
    e = sub.add_parser("evaluate", help="metrics of a model bundle on any data source")
    e.add_argument("--model", default=None, help="bundle (.json); default: the shipped model")
    e.add_argument("--data", nargs="+", required=True)
    e.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    e.add_argument("--split-file", default=None, help="split.json of the training run (default: the bundle's own)")
    e.add_argument("--no-assign", action="store_true", help="skip cell-level joint assignment")
    e.add_argument("--json", default=None, help="write the full result here")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    c = sub.add_parser("calibrate", help="choose cell-assignment penalties on development cells (cells.csv)")
    c.add_argument("--model", default=None)
    c.add_argument("--data", required=True, help="the VOC metaphase folder with cells.csv")
    c.add_argument("--min-specificity", type=float, default=0.95)
    c.add_argument("--json", default=None)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_calibrate)
    x = sub.add_parser("context", help="fit a bundle's cell-context stage on its training cells (crop network frozen)")
    x.add_argument("--model", default=None, help="bundle (.json) with its split beside it; default: the shipped model")
    x.add_argument("--data", nargs="+", required=True)
    x.add_argument("--out", required=True, help="the new bundle (NAME.json; weights and split go beside it)")
    x.add_argument("--epochs", type=int, default=60)
    x.add_argument("--aug-passes", type=int, default=2, help="augmented views of each training chromosome")
    x.add_argument("--dim", type=int, default=96)
    x.add_argument("--layers", type=int, default=2)
    x.add_argument("--members", type=int, default=2, help="context networks trained with different seeds, averaged")
    x.add_argument("--assignment-members", type=int, default=1,
                   help="how many of the members read the cell's joint assignment (the others do not)")
    x.add_argument("--no-assignment", action="store_true", help="no member reads the cell's joint assignment")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--companion", default=None,
                   help="a second crop network bundle (trained on crops without the outline cut) whose probabilities "
                        "are averaged with the model's; written beside --out as NAME-companion")
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func=cmd_context)
    d = sub.add_parser("detect", help="train the learned chromosome detector (centre heatmap) on VOC metaphases")
    d.add_argument("--data", nargs="+", required=True, help="VOC metaphase folders (images/ + annotations/)")
    d.add_argument("--out", required=True, help="run folder (checkpoint, split, curves, detector bundle)")
    d.add_argument("--split-file", default=None, help="case split (default: the shipped classifier's)")
    d.add_argument("--width", default="small", choices=["small", "base"])
    d.add_argument("--scale", type=float, default=0.5, help="detector-input pixels per image pixel")
    d.add_argument("--patch", type=int, default=256)
    d.add_argument("--batch-size", type=int, default=16)
    d.add_argument("--lr", type=float, default=2e-3)
    d.add_argument("--epochs", type=int, default=1000)
    d.add_argument("--samples-per-epoch", type=int, default=1600)
    d.add_argument("--time-budget", type=float, default=0.0, help="minutes; cosine schedule over it, then stop")
    d.add_argument("--patience", type=int, default=1000)
    d.add_argument("--paste-prob", type=float, default=0.5, help="share of patches with pasted crossings")
    d.add_argument("--centre-paste", type=float, default=0.0,
                   help="share of pasted chromosomes centred on another's centre (crossings that share a peak)")
    d.add_argument("--twin", action="store_true",
                   help="a second box per peak for chromosomes that share a centre (crossing pairs)")
    d.add_argument("--init", default=None, help="start from this detector bundle (e.g. models/chromodesk-detector.json)")
    d.add_argument("--no-augment", action="store_true")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=0)
    d.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_detect)
    v = sub.add_parser("evaluate-detect", help="detection metrics (AP, recall, precision, counts, end to end)")
    v.add_argument("--model", default=None, help="detector bundle (.json); default: the shipped one")
    v.add_argument("--classifier", default=None, help="classifier bundle for end_to_end_accuracy; default: shipped")
    v.add_argument("--data", nargs="+", required=True)
    v.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    v.add_argument("--split-file", default=None)
    v.add_argument("--limit", type=int, default=0, help="at most this many images (quick looks)")
    v.add_argument("--no-classify", action="store_true", help="skip detect -> classify -> assign")
    v.add_argument("--threshold", type=float, default=None,
                   help="the learned detector's score threshold instead of its bundle's (choose it on --split val)")
    v.add_argument("--no-classical", action="store_true", help="skip the classical detector beside it")
    v.add_argument("--json", default=None)
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=cmd_evaluate_detect)
    r = sub.add_parser("reject", help="fit a classifier bundle's 'not a chromosome' head (crop network frozen)")
    r.add_argument("--model", default=None, help="classifier bundle (.json) with its split beside it; default: shipped")
    r.add_argument("--data", required=True, help="the VOC metaphase folder")
    r.add_argument("--out", required=True, help="the new bundle (NAME.json; weights, split and report beside it)")
    r.add_argument("--detector", default=None, help="detector bundle whose false positives become negatives too")
    r.add_argument("--kind", choices=("crops", "embedding"), default="crops",
                   help="crops: a small network of its own on each box's crop (default); embedding: a head on the "
                        "crop network's embedding")
    r.add_argument("--hidden", type=int, default=0, help="width (0: 32 for crops, 64 for embedding)")
    r.add_argument("--epochs", type=int, default=0, help="0: 30 for crops, 100 for embedding")
    r.add_argument("--max-positive-reject", type=float, default=0.002,
                   help="share of real validation chromosomes the threshold may reject")
    r.add_argument("--max-train-images", type=int, default=400, help="0: every training image")
    r.add_argument("--max-eval-images", type=int, default=0, help="cap on validation/test images (quick looks)")
    r.add_argument("--no-test", action="store_true", help="do not report the test cases")
    r.add_argument("--no-box-features", action="store_true",
                   help="the head reads only the classifier's cell features, not how each box sits on what it holds")
    r.add_argument("--max-negative-cover", type=float, default=0.15,
                   help="taught negatives hold at most this share of any chromosome's box")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=1, help="processes that preprocess the images (on the CPU)")
    r.add_argument("--threads", type=int, default=0, help="torch threads for fitting (0: torch's default)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_reject)
    m = sub.add_parser("masks", help="train the mask network (one mask per chromosome, crossings separated)")
    m.add_argument("--polygons", required=True, help="the polygon metaphase folder (images/ + polygons/)")
    m.add_argument("--gband", default=None, help="VOC G-band metaphases: isolated chromosomes with pasted crossings")
    m.add_argument("--out", required=True, help="run folder (checkpoint, history, segmenter bundle)")
    m.add_argument("--split-file", default=None, help="case split for the G-band images (default: the shipped classifier's)")
    m.add_argument("--epochs", type=int, default=30)
    m.add_argument("--samples-per-epoch", type=int, default=4000)
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--lr", type=float, default=2e-3)
    m.add_argument("--gband-share", type=float, default=0.5)
    m.add_argument("--gband-images", type=int, nargs=3, default=[300, 40, 60], metavar=("TRAIN", "VAL", "TEST"))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=cmd_masks)
    em = sub.add_parser("evaluate-masks", help="mask IoU on held-out cells: network vs threshold + largest component")
    em.add_argument("--model", default=None, help="segmenter bundle (.json); default: the shipped one")
    em.add_argument("--polygons", required=True)
    em.add_argument("--gband", default=None)
    em.add_argument("--split", default="test", choices=["test", "val", "train"])
    em.add_argument("--split-file", default=None)
    em.add_argument("--synthetic", type=int, default=600, help="G-band made crossings to measure")
    em.add_argument("--json", default=None)
    em.add_argument("--quiet", action="store_true")
    em.set_defaults(func=cmd_evaluate_masks)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"chromodesk-train: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"chromodesk-train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chromodesk-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
