"""``chromodesk-train detect``: train the centre-heatmap detector from random weights.

The same conventions as the classifier's loop: the bundle's case split (so no test case is
ever seen), a time budget with a cosine schedule over it, one checkpoint per epoch
(``--resume`` loses at most one), the epoch with the best validation AP50 kept, the score
threshold chosen on the validation images, curves + metrics + a verified bundle.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.detector_input import pad_to_multiple
from chromodesk.inference.detector import DetectorMeta, flip_averaged, save_detector
from chromodesk.inference.detector_net import CenterNetLite, decode

from .detect_data import DetectAugment, DetectImage, isolated_sprites, load_detect_source, make_targets, sample_patch
from .detect_metrics import average_precision, best_threshold
from .fit import Clock, Interrupt, train_device


@dataclass
class DetectTrainConfig:
    width: str = "small"
    scale: float = 0.5
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 1000
    samples_per_epoch: int = 1600  # random patches per epoch (an epoch is a validation point)
    time_budget_min: float = 0.0  # cosine over the budget; 0 = cosine over ``epochs``
    patience: int = 1000
    seed: int = 0
    threads: int = 0
    cpu_bf16: bool = True
    twin: bool = False  # a second box per peak for chromosomes that share a centre (crossings)
    init: str = ""  # a detector bundle to start from (its twin head, if new, starts at random)
    augment: DetectAugment = field(default_factory=DetectAugment)

    def to_dict(self) -> dict:
        return asdict(self)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per positive centre."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos) * weight
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def detection_loss(out, heat, weight, reg, reg_mask, twins=None) -> tuple[torch.Tensor, dict]:
    heat_logits, size, offset = (o.float() for o in out[:3])
    lh = focal_loss(heat_logits[:, 0], heat, weight)
    m = reg_mask.unsqueeze(1)
    n = reg_mask.sum().clamp(min=1)
    ls = (F.l1_loss(size, reg[:, :2], reduction="none") * m).sum() / n
    lo = (F.l1_loss(offset, reg[:, 2:], reduction="none") * m).sum() / n
    terms = {"heat": float(lh.detach()), "size": float(ls.detach()), "offset": float(lo.detach())}
    if twins is None or len(out) < 4:
        return lh + ls + lo, terms
    # the twin: present or not at every true peak (a shared centre is rare: weighted up), and
    # its size and offset where there is one
    tw = out[3].float()
    presence = twins[:, 0]
    bce = F.binary_cross_entropy_with_logits(tw[:, 0], presence, pos_weight=torch.tensor(4.0, device=tw.device),
                                             reduction="none")
    lt = (bce * reg_mask).sum() / n
    tm = presence.unsqueeze(1)
    nt = presence.sum().clamp(min=1)
    lr = (F.l1_loss(tw[:, 1:], twins[:, 1:], reduction="none") * tm).sum() / nt
    terms.update(twin=float(lt.detach()), twin_box=float(lr.detach()))
    return lh + ls + lo + lt + 0.5 * lr, terms


def make_batch(images: list[DetectImage], sprites: dict, cfg: DetectTrainConfig, rng: np.random.Generator):
    """(patches, heat, weight, reg, reg_mask) and, for a twin detector, the twin targets."""
    rows = []
    for _ in range(cfg.batch_size):
        im = images[int(rng.integers(len(images)))]
        patch, boxes, cut = sample_patch(im, sprites.get(im.name, []), cfg.augment, rng)
        rows.append((patch, *make_targets(boxes, cut, patch.shape, twin=cfg.twin)))
    parts = [torch.from_numpy(np.stack(a)) for a in zip(*rows)]
    parts[0] = parts[0].unsqueeze(1)
    return tuple(parts)


@torch.inference_mode()
def predict_images(model: CenterNetLite, images: list[DetectImage], device, threshold: float = 0.05,
                   tta: bool = False) -> list[np.ndarray]:
    """Detections (n, 5) per image in detector-input pixels, all peaks above ``threshold``."""
    model.eval()
    out = []
    for im in images:
        x = torch.from_numpy(pad_to_multiple(im.x.astype(np.float32))).to(device)[None, None]
        maps = flip_averaged(model, x) if tta else model(x)
        found = decode(*maps[:3], threshold, twin=maps[3] if len(maps) > 3 else None)[0]
        found[:, :4] *= 4
        out.append(found)
    return out


def fit_detector(data_paths: list[str], cfg: DetectTrainConfig, run_dir: str | Path, split: dict, resume: bool = False,
                 quiet: bool = False) -> dict:
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = train_device()
    sets = [load_detect_source(p, cfg.scale, quiet) for p in data_paths]
    train = [im for s in sets for im in s.part(split, "train")]
    val = [im for s in sets for im in s.part(split, "val")]
    if not train or not val:
        raise ValueError(f"empty split: {len(train)} train, {len(val)} validation images (does the split name these cases?)")
    sprites = {im.name: isolated_sprites(im) for im in train}
    atomic_write_text(run / "split.json", json.dumps(split, indent=0, sort_keys=True))
    atomic_write_text(run / "config.json", json.dumps(cfg.to_dict(), indent=2))
    if not quiet:
        print(f"{len(train)} training / {len(val)} validation images, "
              f"{sum(map(len, sprites.values()))} isolated chromosomes to paste", flush=True)

    model = CenterNetLite(cfg.width, twin=cfg.twin)
    if cfg.init and not (resume and (run / "checkpoint.pt").is_file()):
        start_from(model, cfg.init, quiet)
    model = model.to(device)
    cpu_bf16 = device.type == "cpu" and cfg.cpu_bf16 and "AVX512" in torch.backends.cpu.get_cpu_capability()
    amp = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    clock = Clock()
    steps_per_epoch = math.ceil(cfg.samples_per_epoch / cfg.batch_size)

    def factor(step: int) -> float:  # short warm-up, then cosine to 2% over the budget (or the epochs)
        frac = clock.elapsed() / (cfg.time_budget_min * 60) if cfg.time_budget_min else step / (cfg.epochs * steps_per_epoch)
        frac = min(1.0, frac)
        return min(1.0, 0.05 + frac / 0.03) if frac < 0.03 else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (frac - 0.03) / 0.97))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict] = []
    start, best_ap, best_state, stale = 0, -1.0, None, 0
    ckpt = run / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, best_ap, stale, best_state = int(state["epoch"]), float(state["best_ap"]), int(state["stale"]), state["best_model"]
        clock.offset = float(state["elapsed"])
        history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
        if not quiet:
            print(f"resumed after epoch {start} (best val AP50 {best_ap:.4f}, {clock.offset / 60:.1f} min spent)", flush=True)

    with Interrupt() as interrupt:
        for epoch in range(start, cfg.epochs):
            rng = np.random.default_rng(cfg.seed * 100003 + epoch)
            model.train()
            t0, seen, parts = time.time(), 0, {"loss": 0.0, "heat": 0.0, "size": 0.0, "offset": 0.0}
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch", disable=quiet, leave=False, mininterval=5.0)
            for _ in bar:
                x, *targets = (t.to(device) for t in make_batch(train, sprites, cfg, rng))
                with torch.autocast(device.type, dtype=torch.float16 if amp else torch.bfloat16, enabled=amp or cpu_bf16):
                    out = model(x)
                loss, terms = detection_loss(out, *targets)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                scaler.step(opt)
                scaler.update()
                sched.step()
                seen += len(x)
                parts["loss"] += float(loss.detach()) * len(x)
                for k, v in terms.items():
                    parts[k] = parts.get(k, 0.0) + v * len(x)
                bar.set_postfix(loss=f"{parts['loss'] / seen:.3f}", img_s=f"{seen / max(time.time() - t0, 1e-6):.1f}")
            bar.close()
            rate = seen / max(time.time() - t0, 1e-6)
            preds = predict_images(model, val, device)
            truths = [im.boxes for im in val]
            ap = average_precision(preds, truths, 0.5)
            best = best_threshold(preds, truths)
            row = {"epoch": epoch + 1, **{f"train_{k}": v / max(seen, 1) for k, v in parts.items()}, "val_ap50": ap,
                   "val_recall": best["recall"], "val_precision": best["precision"], "val_threshold": best["threshold"],
                   "val_median_count_error": best["median_count_error"], "patches_per_s": rate,
                   "lr": opt.param_groups[0]["lr"], "minutes": clock.elapsed() / 60}
            history.append(row)
            if ap > best_ap:
                best_ap, stale = ap, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            if not quiet:
                print(f"epoch {epoch + 1}: loss {row['train_loss']:.3f} (heat {row['train_heat']:.3f}) | val AP50 {ap:.4f} "
                      f"R {best['recall']:.3f} P {best['precision']:.3f} @ {best['threshold']:.2f} | "
                      f"{rate:.1f} patches/s | {row['minutes']:.1f} min", flush=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch + 1, "best_ap": best_ap, "stale": stale, "best_model": best_state,
                        "elapsed": clock.elapsed()}, tmp)
            os.replace(tmp, ckpt)
            atomic_write_text(run / "history.json", json.dumps(history, indent=1))
            over = bool(cfg.time_budget_min) and clock.elapsed() / 60 > cfg.time_budget_min
            if stale >= cfg.patience or interrupt.flag or over:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return finish_detector(model, val, cfg, run, history, [s.source for s in sets], len(train))


def start_from(model: CenterNetLite, bundle: str, quiet: bool) -> None:
    """The weights of a shipped or earlier detector; a twin head it lacks starts at random."""
    from chromodesk.inference.bundle import bundle_paths, read_verified_weights
    from chromodesk.inference.detector import read_detector_meta

    meta = read_detector_meta(bundle)
    if meta.width != model.width:
        raise ValueError(f"{bundle}: a {meta.width} detector cannot start a {model.width} one")
    _, state = read_verified_weights(bundle_paths(bundle)[0], meta.weights_file, meta.weights_sha256, "detector")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("twin.") for k in missing):
        raise ValueError(f"{bundle}: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if not quiet:
        print(f"started from {meta.model_id}" + (f"; {len(missing)} twin tensors at random" if missing else ""), flush=True)


def finish_detector(model: CenterNetLite, val: list[DetectImage], cfg: DetectTrainConfig, run: Path, history: list[dict],
                    sources: list[str], n_train: int) -> dict:
    """Choose on validation whether to average the four flips and the score threshold (best F1),
    then write the bundle, metrics and curves."""
    device = next(model.parameters()).device
    truths = [im.boxes for im in val]
    options = {}
    for tta in (False, True):
        preds = predict_images(model, val, device, tta=tta)
        options[tta] = {"ap50": average_precision(preds, truths, 0.5), "at_threshold": best_threshold(preds, truths)}
    tta = options[True]["at_threshold"]["f1"] > options[False]["at_threshold"]["f1"]
    best = options[tta]["at_threshold"]
    metrics = {"val_ap50": options[tta]["ap50"], "val_at_threshold": best, "tta": tta,
               "val_options": {("four flips" if k else "one pass"): v for k, v in options.items()}, "history": history,
               "patches_per_s": float(np.median([h["patches_per_s"] for h in history])) if history else None}
    meta = DetectorMeta(model_id=f"centernet-{cfg.width}-{time.strftime('%Y%m%d-%H%M%S')}", width=cfg.width, scale=cfg.scale,
                        threshold=best["threshold"], tta=tta, twin=cfg.twin,
                        training={"sources": sources, "train_images": n_train, "val_images": len(val),
                                  "split": "by case (the classifier bundle's split)", "epochs_run": len(history),
                                  "minutes": history[-1]["minutes"] if history else 0.0, "config": cfg.to_dict(),
                                  "device": str(device)},
                        metrics={"val_ap50": metrics["val_ap50"], "val_recall50": best["recall"],
                                 "val_precision50": best["precision"]})
    save_detector(model.cpu(), meta, run / "detector")
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1))
    plot_detect_curves(history, run / "curves.png", run.name)
    return metrics


def plot_detect_curves(history: list[dict], path: Path, title: str = "") -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key in ("train_loss", "train_heat", "train_size", "train_offset"):
        axes[0].plot(ep, [h[key] for h in history], label=key[6:])
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].legend()
    for key in ("val_ap50", "val_recall", "val_precision"):
        axes[1].plot(ep, [h[key] for h in history], label=key[4:], marker=".")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation (IoU 0.5)")
    axes[1].set_ylim(0.5, 1.0)
    axes[1].grid(alpha=0.3)
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
