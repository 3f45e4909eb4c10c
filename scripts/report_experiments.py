"""The source report's experiments, rerun on the case-disjoint split (issue 19).

    python scripts/report_experiments.py run [--budget 4] [--threads 1] [--only NAME ...]
    python scripts/report_experiments.py report

``run`` trains every configuration below for the same budget of *training* time
(evaluation not counted) on the crops of ``tseng2023-gband-metaphases`` and appends one
row per run to ``docs/report-experiments.json`` (runs already there are skipped, so a
killed run resumes where it stopped). ``report`` prints the README tables and draws
``docs/report-experiments.png``.

Groups:
- grid: the report's nine optimizer x learning-rate runs, ResNet18, batch 16, weight decay
  1e-5, StepLR x0.1 every 30 epochs, early stop after 10, on ChromoDesk's 64 px crops;
- arch: ResNet50, VGG16, InceptionV3 and InceptionV3 with Chu's head, at the grid's best
  optimizer and rate (chosen on validation);
- recipe: the report's whole recipe (its preprocessing: the box crop, NLM h=10 / 7 / 21,
  stretched to 224 px, no masks or size features, no augmentation; the grid's best
  optimizer and rate, batch 16, StepLR) against the shipped recipe (64 px masked upright
  crops with size features, AdamW 1e-3, batch 64, weight decay 5e-4, cosine over the
  budget, label smoothing 0.05, augmentation);
- split: the shipped recipe again, on a random split by chromosome instead of by case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chromodesk.core.atomic import atomic_write_text  # noqa: E402
from chromodesk.core.preprocess import PreprocessConfig  # noqa: E402
from training.augment import AugmentConfig  # noqa: E402
from training.data import CACHE_DIR, CropSet, load_source, make_split  # noqa: E402
from training.fit import TrainConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"
RESULTS = ROOT / "docs" / "report-experiments.json"
FIGURE = ROOT / "docs" / "report-experiments.png"
RUNS = ROOT / "runs" / "report-exp"
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LRS = (1e-4, 1e-3, 1e-2)
ARCHS = ("resnet50", "vgg16", "inception_v3", "inception_v3_chu")
EPOCH_CROPS = 8000  # an "epoch" of 8,000 crops drawn afresh: several validation points within the budget


def report_config(opt: str, lr: float, arch: str = "resnet18", augment: bool = True, **kw) -> TrainConfig:
    """The report's hyperparameters (batch 16, wd 1e-5, StepLR 30 / 0.1, patience 10)."""
    return TrainConfig(arch=arch, optimizer=opt, lr=lr, batch_size=16, weight_decay=1e-5, epochs=10_000,
                       schedule="step", step_size=30, gamma=0.1, patience=10, epoch_crops=EPOCH_CROPS,
                       eval_test_each_epoch=False, test_flip_tta=False, augment=AugmentConfig(enabled=augment), **kw)


def shipped_config(**kw) -> TrainConfig:
    """The shipped crop network's recipe (models/chromodesk-resnet18.json, training.config)."""
    return TrainConfig(arch="resnet18", optimizer="adamw", lr=1e-3, batch_size=64, weight_decay=5e-4, epochs=10_000,
                       schedule="cosine-time", patience=10_000, label_smoothing=0.05, epoch_crops=EPOCH_CROPS,
                       eval_test_each_epoch=False, test_flip_tta=False, **kw)


# -- data -----------------------------------------------------------------------------------
def report_crops(root: Path) -> CropSet:
    """The report's preprocessing of the same chromosomes: the box cut out, NLM (h=10,
    template 7, search 21), stretched to 224 x 224; no mask, no upright turn, no features."""
    import cv2

    from chromodesk.core.imaging import load_gray
    from chromodesk.core.labels import CLASS_INDEX
    from chromodesk.core.voc import find_annotation, read_voc
    from training.data import _voc_images, case_of_image

    cache = CACHE_DIR / "crops" / f"report224-{root.name}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return CropSet(z["images"], z["features"], z["labels"], z["cells"], z["cases"], z["source"])
    images, labels, cells = [], [], []
    paths = _voc_images(root)
    t0 = time.time()
    for i, path in enumerate(paths):
        xml = find_annotation(path)
        if xml is None:
            continue
        img = load_gray(path)
        for o in read_voc(xml, (img.width, img.height)).objects:
            if o.label is None:
                continue
            b = o.box
            crop = cv2.fastNlMeansDenoising(np.ascontiguousarray(img.gray[b.ymin:b.ymax, b.xmin:b.xmax]), None, 10, 7, 21)
            images.append(cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA))
            labels.append(CLASS_INDEX[o.label])
            cells.append(path.stem)
        if i % 100 == 0:
            print(f"report crops: {i}/{len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    n = len(labels)
    data = CropSet(np.stack(images), np.zeros((n, 5), np.float32), np.array(labels, np.int64), np.array(cells),
                   np.array([case_of_image(c) for c in cells]), np.array([root.name] * n))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, images=data.images, features=data.features, labels=data.labels, cells=data.cells,
             cases=data.cases, source=data.source)
    tmp.replace(cache)
    return data


def by_chromosome(data: CropSet) -> CropSet:
    """The same crops with every chromosome its own "case": a random split by chromosome,
    as the report made it (a cell's other chromosomes, and its homologue, land in training)."""
    cases = np.char.add(np.char.add(data.cases.astype(str), "#"), np.arange(len(data)).astype(str))
    return dataclasses.replace(data, cases=cases)


# -- runs -----------------------------------------------------------------------------------
def plan(results: list[dict]) -> list[tuple[str, str, str, TrainConfig]]:
    """(name, group, data kind, config); the arch and recipe runs use the grid's best
    optimizer and rate on validation, so they can only be planned once the grid is done."""
    runs = [(f"grid-{o}-lr{lr:g}", "grid", "ours", report_config(o, lr)) for o in OPTIMIZERS for lr in LRS]
    grid = [r for r in results if r["group"] == "grid"]
    if len(grid) == len(OPTIMIZERS) * len(LRS):
        best = max(grid, key=lambda r: r["best_val_acc"])
        o, lr = best["config"]["train"]["optimizer"], best["config"]["train"]["lr"]
        runs += [(f"arch-{a}", "arch", "ours", report_config(o, lr, arch=a)) for a in ARCHS]
        runs += [("recipe-report", "recipe", "report224", report_config(o, lr, augment=False)),
                 ("recipe-shipped", "recipe", "ours", shipped_config()),
                 ("split-by-chromosome", "split", "ours-random", shipped_config())]
    return runs


def run_one(name: str, group: str, kind: str, cfg: TrainConfig, data: CropSet, pre: PreprocessConfig) -> dict:
    import torch

    from training.fit import fit

    run = RUNS / name
    t0 = time.time()
    split = make_split(data, cfg.seed)
    metrics = fit(data, cfg, pre, run, resume=True, split=split, quiet=True)
    hist = metrics["history"]
    best = max(hist, key=lambda h: h["val_acc"])
    weights = run / "model.safetensors"
    from chromodesk.inference.network import ChromosomeNet

    params = sum(p.numel() for p in ChromosomeNet(cfg.arch).parameters())
    test = metrics["test"]
    return {
        "name": name, "group": group, "data": kind,
        "split": "random by chromosome (seed 0, 70/10/20)" if kind == "ours-random" else "by case (seed 0, 70/10/20)",
        "config": {"train": cfg.to_dict(), "preprocess": pre.to_dict() if kind != "report224" else
                   {"report": "box crop, NLM h=10 t=7 s=21, stretched to 224 px, no mask, no features"}},
        "epochs": len(hist), "crops_seen": int(sum(h.get("crops", 0) for h in hist)),
        "train_minutes": round(hist[-1].get("train_seconds", 0) / 60, 2),
        "best_epoch": best["epoch"], "best_val_acc": round(best["val_acc"], 4),
        "test_acc": round(test["accuracy"], 4), "test_cell_acc": round(test["cell_accuracy"], 4),
        "test_chromosomes": test["n_chromosomes"], "test_cells": test["n_cells"],
        "train_crops_per_s": round(metrics["train_images_per_s"], 1),
        "infer_crops_per_s": round(metrics["infer_images_per_s"], 1),
        "parameters": params, "bundle_mb": round(weights.stat().st_size / 1e6, 1) if weights.is_file() else None,
        "curve": [{"train_minutes": round(h.get("train_seconds", 0) / 60, 3), "val_acc": round(h["val_acc"], 4)}
                  for h in hist],
        "wall_seconds": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def cmd_run(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    datasets: dict[str, tuple[CropSet, PreprocessConfig]] = {}
    while True:
        done = {r["name"] for r in results}
        todo = [r for r in plan(results) if r[0] not in done and (not args.only or r[0] in args.only)]
        if not todo:
            break
        name, group, kind, cfg = todo[0]
        cfg = dataclasses.replace(cfg, time_budget_min=args.budget, threads=args.threads)
        if kind not in datasets:
            if kind == "report224":
                datasets[kind] = (report_crops(DATA), PreprocessConfig(size=224, nlm_h=10.0, nlm_search=21, upright=False))
            else:
                pre = PreprocessConfig()  # the shipped preprocessing
                crops = load_source(DATA, pre)
                datasets[kind] = (by_chromosome(crops) if kind == "ours-random" else crops, pre)
        data, pre = datasets[kind]
        print(f"{time.strftime('%H:%M:%S')} {name}: {len(data)} crops, {args.budget} min of training", flush=True)
        row = run_one(name, group, kind, cfg, data, pre)
        print(json.dumps({k: v for k, v in row.items() if k not in ("config", "curve")}), flush=True)
        results.append(row)
        atomic_write_text(RESULTS, json.dumps(results, indent=1))
    return 0


# -- report -----------------------------------------------------------------------------------
def cmd_report(_args) -> int:
    results = json.loads(RESULTS.read_text())
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    print("| optimizer | lr 1e-4 | lr 1e-3 | lr 1e-2 |\n|---|---|---|---|")
    for o in OPTIMIZERS:
        cells = []
        for lr in LRS:
            r = next((r for r in results if r["name"] == f"grid-{o}-lr{lr:g}"), None)
            cells.append(f"{pct(r['best_val_acc'])} / {pct(r['test_acc'])}" if r else "not run")
        print(f"| {o} | " + " | ".join(cells) + " |")
    print("\n| run | validation | test | cells all right | epochs (crops seen) | train crops/s | infer crops/s | parameters | bundle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["group"] == "grid" and r["name"] != _best_grid(results):
            continue
        print(f"| {r['name']} | {pct(r['best_val_acc'])} | {pct(r['test_acc'])} | {pct(r['test_cell_acc'])} | "
              f"{r['epochs']} ({r['crops_seen']:,}) | {r['train_crops_per_s']:.0f} | {r['infer_crops_per_s']:.0f} | "
              f"{r['parameters'] / 1e6:.1f} M | {r['bundle_mb']} MB |")
    _figure(results)
    print(f"\nfigure: {FIGURE.relative_to(ROOT)}")
    return 0


def _best_grid(results: list[dict]) -> str:
    grid = [r for r in results if r["group"] == "grid"]
    return max(grid, key=lambda r: r["best_val_acc"])["name"] if grid else ""


def _figure(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("grid", "ResNet18: optimizer x learning rate"), ("arch", "architectures (grid's best optimizer)"),
              ("recipe", "report's recipe vs shipped; random split")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for ax, (group, title) in zip(axes, groups):
        members = [r for r in results if r["group"] == group or (group == "arch" and r["name"] == _best_grid(results))
                   or (group == "recipe" and r["group"] == "split")]
        for r in members:
            xs = [p["train_minutes"] for p in r["curve"]]
            ys = [100 * p["val_acc"] for p in r["curve"]]
            ax.plot(xs, ys, marker="o", ms=3, label=r["name"])
        ax.set_title(title)
        ax.set_xlabel("training minutes (1 CPU thread)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("validation accuracy, %")
    fig.tight_layout()
    tmp = FIGURE.with_name(FIGURE.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(FIGURE)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--budget", type=float, default=4.0, help="minutes of training per run")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--only", nargs="*", default=[])
    r.set_defaults(func=cmd_run)
    sub.add_parser("report").set_defaults(func=cmd_report)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
