"""``chromodesk-train masks``: train the mask network; ``evaluate-masks``: measure it.

Training mixes the two sources of ``mask_data``: real polygons (Q-band) and G-band isolated
chromosomes with other isolated chromosomes pasted across or against them. Conventions of
the other training tools: a split by cell/case (the polygon set by cell, seed 0; the G-band
images by the classifier bundle's case split), one checkpoint per epoch (``--resume``), the
epoch with the best validation IoU kept, the threshold chosen on validation, a verified
bundle. The test figures compare with threshold + largest component (the preprocessing's
``isolate``), for isolated chromosomes and for those that touch or cross another.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.document import Box
from chromodesk.core.mask_input import MASK_SIZE, mask_input, window_mask, window_target
from chromodesk.core.preprocess import PreprocessConfig, crop_with_margin, isolate
from chromodesk.inference.mask_net import MaskUNet
from chromodesk.inference.segmenter import SegmenterMeta, save_segmenter, window_probabilities

from .mask_data import MaskImage, composite, dihedral, gband_images, polygon_images, sample, split_by_group


@dataclass
class MaskTrainConfig:
    width: str = "small"
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    samples_per_epoch: int = 4000
    gband_share: float = 0.5  # share of samples from G-band images (the rest: polygons)
    paste_prob: float = 0.7  # share of G-band samples with one or two pasted partners
    jitter: float = 0.04  # box edges move by this share of the box's longer side (sd)
    gband_images: tuple[int, int, int] = (300, 40, 60)  # train / val / test images read
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def load_mask_data(polygons: str, gband: str | None, split: dict, cfg: MaskTrainConfig, quiet: bool = False) -> dict:
    data = {"polygons": split_by_group(polygon_images(polygons, quiet=quiet), cfg.seed)}
    if gband:
        parts = dict(zip(("train", "val", "test"), cfg.gband_images))
        data["gband"] = gband_images(gband, split, parts, seed=cfg.seed, quiet=quiet)
    return data


def _pick(images: list[MaskImage], rng: np.random.Generator) -> tuple[MaskImage, int]:
    im = images[int(rng.integers(len(images)))]
    return im, int(rng.integers(len(im.boxes)))


def gband_sample(images: list[MaskImage], rng: np.random.Generator, cfg: MaskTrainConfig, augment: bool = True):
    im, k = _pick(images, rng)
    n = 0 if rng.random() > cfg.paste_prob else 1 + int(rng.random() < 0.3)
    partners = [_pick(images, rng) for _ in range(n)]
    return sample(im, k, rng, partners, cfg.jitter if augment else 0.0, (1.4, 1.9) if augment else (1.6, 1.6))


def polygon_sample(images: list[MaskImage], rng: np.random.Generator, cfg: MaskTrainConfig, augment: bool = True):
    im, k = _pick(images, rng)
    return sample(im, k, rng, (), cfg.jitter if augment else 0.0, (1.4, 1.9) if augment else (1.6, 1.6))


def make_batch(data: dict, rng: np.random.Generator, cfg: MaskTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(cfg.batch_size):
        use_gband = "gband" in data and rng.random() < cfg.gband_share
        x, y = (gband_sample(data["gband"]["train"], rng, cfg) if use_gband else
                polygon_sample(data["polygons"]["train"], rng, cfg))
        x, y = dihedral(x, y, rng)
        x[0] *= float(rng.uniform(0.8, 1.2))  # stain strength
        xs.append(x), ys.append(y)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy plus soft Dice: the chromosome is a small part of its window, and
    Dice keeps thin ones from being traded for background."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + target.sum((1, 2)) + 1)
    return bce + dice.mean()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# -- evaluation ---------------------------------------------------------------------------
def polygon_rows(model: MaskUNet, images: list[MaskImage], thresholds=(0.5,), pre: PreprocessConfig = PreprocessConfig(),
                 window_scale: float = 1.6) -> list[dict]:
    """Per polygon: IoU of the network (at each threshold) and of threshold + largest component."""
    rows = []
    for im in images:
        pairs = [mask_input(im.enhanced, b, MASK_SIZE, window_scale) for b in im.boxes]
        probs = window_probabilities(model, np.stack([p[0] for p in pairs]))
        for k, box in enumerate(im.boxes):
            _, region = crop_with_margin(im.enhanced, box, pre.margin)
            truth = _place(im.masks[k], box, region)
            _, base = isolate(im.enhanced, box, pre)
            row = {"image": im.name, "touching": im.touching[k], "baseline": iou(base, truth)}
            for t in thresholds:
                row[f"net@{t:.2f}"] = iou(window_mask(probs[k], pairs[k][1], region, t), truth)
            rows.append(row)
    return rows


def _place(mask: np.ndarray, where: Box, region: Box) -> np.ndarray:
    out = np.zeros((region.height, region.width), np.uint8)
    out[where.ymin - region.ymin : where.ymax - region.ymin, where.xmin - region.xmin : where.xmax - region.xmin] = mask
    return out


def summarise(rows: list[dict], key: str) -> dict:
    iso = [r[key] for r in rows if not r["touching"]]
    tch = [r[key] for r in rows if r["touching"]]
    return {"isolated": round(float(np.mean(iso)), 4) if iso else None, "n_isolated": len(iso),
            "touching_or_crossing": round(float(np.mean(tch)), 4) if tch else None, "n_touching_or_crossing": len(tch),
            "all": round(float(np.mean([r[key] for r in rows])), 4) if rows else None}


def synthetic_rows(model: MaskUNet, images: list[MaskImage], n: int, cfg: MaskTrainConfig, threshold: float,
                   pre: PreprocessConfig = PreprocessConfig(), seed: int = 1) -> list[dict]:
    """G-band: isolated chromosomes with one or two others pasted across/against them (fixed seed),
    network vs threshold + largest component, at full resolution in the window."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        im, k = _pick(images, rng)
        partners = [_pick(images, rng) for _ in range(1 + int(rng.random() < 0.3))] if rng.random() < 0.7 else []
        pixels, window, asked = composite(im, k, rng, partners)
        local = Box(asked.xmin - window.xmin, asked.ymin - window.ymin, asked.xmax - window.xmin, asked.ymax - window.ymin)
        grey = np.clip(pixels, 0, 255).astype(np.uint8)
        x, _ = mask_input(grey, local)
        prob = window_probabilities(model, x[None])[0]
        frame = Box(0, 0, window.width, window.height)
        truth = window_target(im.masks[k], im.boxes[k], window, size=window.width) > 0.5  # asked == box: no jitter
        _, base = isolate(grey, local, pre)
        _, region = crop_with_margin(grey, local, pre.margin)
        rows.append({"touching": bool(partners), "baseline": iou(_place(base, region, frame), truth),
                     "net": iou(window_mask(prob, mask_input(grey, local)[1], frame, threshold), truth)})
    return rows


# -- training -----------------------------------------------------------------------------
def learning_rate(peak: float, step: int, total: int, warmup: float = 0.1) -> float:
    """Linear warm-up, then cosine to zero; a function of the step alone, so a run resumed with
    more epochs simply stretches the rest of the schedule."""
    w = max(int(warmup * total), 1)
    if step < w:
        return peak * (step + 1) / w
    return 0.5 * peak * (1 + math.cos(math.pi * min((step - w) / max(total - w, 1), 1.0)))


def fit_masks(polygons: str, gband: str | None, split: dict, cfg: MaskTrainConfig, run_dir: str | Path,
              resume: bool = False, quiet: bool = False) -> dict:
    torch.set_num_threads(max(cfg.threads, 1))
    torch.manual_seed(cfg.seed)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    data = load_mask_data(polygons, gband, split, cfg, quiet)
    model = MaskUNet(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(cfg.samples_per_epoch // cfg.batch_size, 1)
    history, best, start = [], -1.0, 0
    ckpt = run / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        history, best, start = state["history"], state["best"], state["epoch"]
    rng = np.random.default_rng(cfg.seed + 1000 * start)
    t0 = time.time() - (history[-1]["seconds"] if history else 0)
    for epoch in range(start, cfg.epochs):
        model.train()
        losses = []
        for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=quiet, leave=False):
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, epoch * steps_per_epoch + i, cfg.epochs * steps_per_epoch)
            x, y = make_batch(data, rng, cfg)
            loss = mask_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        val = summarise(polygon_rows(model, data["polygons"]["val"]), "net@0.50")
        score = val["all"]
        row = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 4), "val_polygon_iou": val,
               "seconds": round(time.time() - t0, 1)}
        if "gband" in data:
            syn = synthetic_rows(model, data["gband"]["val"], 300, cfg, 0.5)
            row["val_gband_synthetic_iou"] = round(float(np.mean([r["net"] for r in syn])), 4)
            score = (score + row["val_gband_synthetic_iou"]) / 2
        history.append(row)
        if not quiet:
            print(json.dumps(row), flush=True)
        if score > best:
            best = score
            torch.save(model.state_dict(), run / "best.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "history": history, "best": best, "epoch": epoch + 1, "config": cfg.to_dict()}, ckpt)
    model.load_state_dict(torch.load(run / "best.pt", weights_only=True))
    model.eval()
    # the threshold is chosen on validation cells, never on test ones
    grid = (0.3, 0.4, 0.5, 0.6, 0.7)
    val_rows = polygon_rows(model, data["polygons"]["val"], grid)
    threshold = max(grid, key=lambda t: np.mean([r[f"net@{t:.2f}"] for r in val_rows]))
    meta = SegmenterMeta(model_id=f"chromodesk-masks-{time.strftime('%Y%m%d')}", width=cfg.width, threshold=threshold,
                         training={"config": cfg.to_dict(), "epochs_run": len(history),
                                   "seconds": history[-1]["seconds"] if history else 0,
                                   "data": {"polygons": Path(polygons).name, "gband": Path(gband).name if gband else None},
                                   "split": "polygon set by cell (seed 0); G-band by the classifier's case split"})
    atomic_write_text(run / "history.json", json.dumps(history, indent=1))
    bundle = save_segmenter(model, meta, run / "segmenter.json")
    return {"bundle": str(bundle), "threshold": threshold, "history": history}


def evaluate_masks(bundle: str, polygons: str, gband: str | None, split: dict, part: str = "test",
                   synthetic_n: int = 600, quiet: bool = False) -> dict:
    from chromodesk.inference.segmenter import DEFAULT_SEGMENTER, load_segmenter

    model, meta = load_segmenter(bundle or DEFAULT_SEGMENTER)
    cfg = MaskTrainConfig()
    data = load_mask_data(polygons, gband, split, cfg, quiet)
    t0 = time.time()
    rows = polygon_rows(model, data["polygons"][part], (meta.threshold,), window_scale=meta.window_scale)
    seconds = time.time() - t0
    key = f"net@{meta.threshold:.2f}"
    images = data["polygons"][part]
    result = {"model": meta.model_id, "part": part, "threshold": meta.threshold,
              "polygon_set": {"network": summarise(rows, key), "threshold_largest_component": summarise(rows, "baseline"),
                              "images": len(images), "cells": len({im.group for im in images}),
                              "seconds_per_chromosome": round(seconds / max(len(rows), 1), 5)},
              "touching_definition": "another polygon within 2 px (crossing polygons overlap)"}
    if gband:
        syn = synthetic_rows(model, data["gband"][part], synthetic_n, cfg, meta.threshold)
        result["gband_synthetic"] = {"network": summarise(syn, "net"), "threshold_largest_component": summarise(syn, "baseline"),
                                     "images": len(data["gband"][part]),
                                     "note": "isolated G-band chromosomes (threshold mask = truth) with 1-2 other isolated "
                                             "chromosomes pasted across/against them in 70% of samples; fixed seed"}
    return result
