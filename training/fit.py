"""The training loop: seeded, resumable (one checkpoint per epoch), early stopping on the
validation split, best checkpoint kept, bundle + reports written at the end."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import FEATURE_NAMES, PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, save_bundle
from chromodesk.inference.network import ChromosomeNet, predict_batch

from .augment import AugmentConfig, augment
from .data import CropSet, make_split, split_index
from .metrics import classification_metrics


@dataclass
class TrainConfig:
    arch: str = "resnet18"
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 1e-3
    batch_size: int = 16
    weight_decay: float = 1e-5
    epochs: int = 100
    schedule: str = "step"  # step (x gamma every step_size epochs, as in the report) | cosine | onecycle
    step_size: int = 30
    gamma: float = 0.1
    patience: int = 10  # early stopping: epochs without validation gain
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 0  # 0 = torch default
    time_budget_min: float = 0.0  # stop (as if early-stopped) after this many minutes of training; 0 = none
    test_flip_tta: bool = True  # the final test figures average each crop with its mirror image, as the app does
    epoch_crops: int = 0  # crops per epoch, drawn afresh each epoch; 0 = the whole training split once
    eval_test_each_epoch: bool = True  # test curve for the report's figures; costs time on long runs
    cpu_bf16: bool = True  # bfloat16 autocast when the CPU supports it natively
    max_train: int = 0  # use at most this many training crops (smoke tests); 0 = all
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    source_weights: dict = field(default_factory=dict)  # source name -> sampling weight per epoch
    init_from: str = ""  # bundle to start from (fine-tuning, warm restart); "" = random initialisation

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d


# -- helpers ------------------------------------------------------------------------------
def train_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _optimizer(cfg: TrainConfig, params):
    name = cfg.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=max(cfg.weight_decay, 1e-4))
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


class Clock:
    """Training time that survives --resume (a killed run continues its schedule).

    Paused while the model is evaluated and checkpointed, so a time budget buys the same
    training for every architecture however long its evaluation takes.
    """

    def __init__(self, already: float = 0.0):
        self.offset, self.start = already, time.time()
        self.paused_at: float | None = None

    def elapsed(self) -> float:
        now = self.paused_at if self.paused_at is not None else time.time()
        return self.offset + now - self.start

    def pause(self) -> None:
        if self.paused_at is None:
            self.paused_at = time.time()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.start += time.time() - self.paused_at
            self.paused_at = None


def _scheduler(cfg: TrainConfig, opt, steps_per_epoch: int, clock: "Clock"):
    """Stepped once per batch, so cosine/onecycle are smooth and resumable mid-run.

    ``cosine-time`` anneals over the time budget instead of a step count: on a shared
    2-core machine the throughput varies, and the schedule should still end at a low rate.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine-time":
        if not cfg.time_budget_min:
            raise ValueError("--schedule cosine-time needs --time-budget")
        budget = cfg.time_budget_min * 60.0

        def factor(_step: int) -> float:
            frac = min(1.0, clock.elapsed() / budget)
            return min(1.0, frac / 0.05 + 0.02) if frac < 0.05 else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (frac - 0.05) / 0.95))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        warm = min(steps_per_epoch, total // 10)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def _initial_model(cfg: TrainConfig, pre: PreprocessConfig) -> ChromosomeNet:
    """Random weights, or a bundle's (a lab fine-tuning the shipped model on its corrections).

    The bundle must match the run's architecture; other preprocessing differences (filters) are
    what fine-tuning adapts to. Another input size is allowed where the network pools globally
    (ResNets): fine-tuning at a larger size keeps what was learned and reads finer bands.
    """
    if not cfg.init_from:
        return ChromosomeNet(cfg.arch, len(CLASSES), len(FEATURE_NAMES))
    from chromodesk.core.errors import InputError
    from chromodesk.inference.bundle import bundle_paths, load_bundle

    model, meta = load_bundle(cfg.init_from)
    if meta.architecture != cfg.arch:
        raise InputError(bundle_paths(cfg.init_from)[0], f"is a {meta.architecture}, but the run trains {cfg.arch} (--arch)")
    if meta.input_size != pre.size and not cfg.arch.startswith("resnet"):
        raise InputError(bundle_paths(cfg.init_from)[0], f"takes {meta.input_size} px crops, but the run uses {pre.size} px (--input-size)")
    # a retrained crop network changes what its cell-context stage and its "not a chromosome" head were
    # fitted to (the embedding they read): both are dropped, to be refitted (`context`, `reject`)
    model.context = None
    model.reject = model.reject_cfg = None
    return model


def batches_for_epoch(train: CropSet, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Indices for one epoch: each source sampled by its weight (1 = once per epoch)."""
    parts = []
    for src in sorted(set(train.source.tolist())):
        idx = np.flatnonzero(train.source == src)
        w = float(cfg.source_weights.get(src, 1.0))
        n = int(round(len(idx) * w))
        parts.append(rng.choice(idx, size=n, replace=n > len(idx)) if n != len(idx) else idx)
    order = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    rng.shuffle(order)
    return order[: cfg.epoch_crops] if cfg.epoch_crops else order


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, data: CropSet, device, batch_size: int = 256, flip_tta: bool = True) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(data), batch_size):
        x = torch.from_numpy(data.images[s : s + batch_size]).to(device)
        f = torch.from_numpy(data.features[s : s + batch_size]).to(device)
        out.append(predict_batch(model, x, f, flip_tta).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def _evaluate_epoch(model, val: CropSet, test: CropSet, device, cfg: TrainConfig, epoch: int, seen: int,
                    loss_sum: float, correct: int, images_per_s: float, lr: float) -> dict:
    """One row of the learning curves: loss and accuracy on train / validation (/ test)."""

    def loss_acc(part: CropSet):
        probs = predict_probs(model, part, device, flip_tta=False)
        loss = float(F.nll_loss(torch.log(torch.from_numpy(probs) + 1e-8), torch.from_numpy(part.labels)))
        return loss, float((probs.argmax(1) == part.labels).mean())

    val_loss, val_acc = loss_acc(val)
    test_loss, test_acc = loss_acc(test) if len(test) and cfg.eval_test_each_epoch else (None, None)
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
            "images_per_s": images_per_s, "lr": lr}


class Interrupt:
    """Ctrl-C / SIGTERM finish the current epoch's checkpoint, then stop."""

    def __init__(self):
        self.flag = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, *_):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        print("\nstopping after this epoch (press again to abort at once)", flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -- the loop -----------------------------------------------------------------------------
def fit(data: CropSet, cfg: TrainConfig, pre: PreprocessConfig, run_dir: str | Path, resume: bool = False,
        split: dict | None = None, rank: int = 0, world: int = 1, quiet: bool = False) -> dict:
    """Train on ``data``'s train split, select on val, report on test. Returns metrics."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = train_device() if world == 1 else (torch.device(f"cuda:{rank % torch.cuda.device_count()}")
                                            if torch.cuda.is_available() else torch.device("cpu"))
    split_path = run / "split.json"
    if split is None:
        split = json.loads(split_path.read_text()) if split_path.is_file() else make_split(data, cfg.seed)
    if rank == 0:
        atomic_write_text(split_path, json.dumps(split, indent=0, sort_keys=True))
        atomic_write_text(run / "config.json", json.dumps({"train": cfg.to_dict(), "preprocess": pre.to_dict()}, indent=2))
    train = data.subset(split_index(data, split, "train"))
    val = data.subset(split_index(data, split, "val"))
    test = data.subset(split_index(data, split, "test"))
    if cfg.max_train and len(train) > cfg.max_train:
        train = train.subset(np.random.default_rng(cfg.seed).choice(len(train), cfg.max_train, replace=False))
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"empty split: {len(train)} train, {len(val)} validation crops (need more cases)")

    model = _initial_model(cfg, pre).to(device)
    amp = device.type == "cuda"
    # bfloat16 autocast on CPUs with native bf16 (AVX512-BF16/AMX): measured 1.7x faster training here
    cpu_bf16 = device.type == "cpu" and cfg.cpu_bf16 and "AVX512" in torch.backends.cpu.get_cpu_capability()
    if amp:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = _optimizer(cfg, net.parameters())
    steps = math.ceil(len(batches_for_epoch(train, cfg, np.random.default_rng(0))) / world / cfg.batch_size)
    clock = Clock()
    budget_s = cfg.time_budget_min * 60.0
    sched = _scheduler(cfg, opt, steps, clock)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict] = []
    start_epoch, best_val, best_state, stale = 0, -1.0, None, 0
    ckpt = run / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, best_val, stale = int(state["epoch"]), float(state["best_val"]), int(state["stale"])
        best_state = state["best_model"]
        clock.offset = float(state.get("elapsed", 0.0))
        history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
        if rank == 0 and not quiet:
            print(f"resumed from epoch {start_epoch} (best val {best_val:.4f})", flush=True)

    gen = torch.Generator().manual_seed(cfg.seed)
    with Interrupt() as interrupt:
        for epoch in range(start_epoch, cfg.epochs):
            rng = np.random.default_rng(cfg.seed * 1000 + epoch)
            gen.manual_seed(cfg.seed * 1000 + epoch + 1)
            order = batches_for_epoch(train, cfg, rng)
            order = order[: len(order) - len(order) % world][rank::world]  # same batch count on every rank
            net.train()
            seen, loss_sum, correct, t0 = 0, 0.0, 0, time.time()
            bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=quiet or rank != 0, leave=False, mininterval=2.0)
            clock.resume()
            for s in bar:
                if budget_s and clock.elapsed() > budget_s:  # the budget can end inside an epoch
                    break
                idx = np.sort(order[s : s + cfg.batch_size])
                x = torch.from_numpy(train.images[idx]).unsqueeze(1).float().div_(255.0)
                f = torch.from_numpy(train.features[idx])
                y = torch.from_numpy(train.labels[idx])
                x, f = augment(x, f, cfg.augment, gen)
                x, f, y = (x * 2 - 1).to(device, non_blocking=True), f.to(device), y.to(device)
                if amp:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.float16 if amp else torch.bfloat16, enabled=amp or cpu_bf16):
                    logits = net(x, f)
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                seen += len(idx)
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == y).sum())
                bar.set_postfix(img_s=f"{seen / max(time.time() - t0, 1e-6):.0f}", loss=f"{loss_sum / seen:.3f}")
            bar.close()
            clock.pause()
            train_secs = time.time() - t0
            stop = False
            if rank == 0:
                row = _evaluate_epoch(model, val, test, device, cfg, epoch, seen, loss_sum, correct,
                                      seen * world / max(train_secs, 1e-6), opt.param_groups[0]["lr"])
                row["crops"], row["train_seconds"] = seen * world, clock.elapsed()
                history.append(row)
                if row["val_acc"] > best_val:
                    best_val, stale = row["val_acc"], 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                if not quiet:
                    print(f"epoch {epoch + 1}: train {row['train_acc']:.4f} loss {row['train_loss']:.3f} | "
                          f"val {row['val_acc']:.4f} | {row['images_per_s']:.0f} img/s | lr {row['lr']:.2e}", flush=True)
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "epoch": epoch + 1, "best_val": best_val, "stale": stale, "best_model": best_state,
                            "elapsed": clock.elapsed()}, tmp)
                os.replace(tmp, ckpt)
                atomic_write_text(run / "history.json", json.dumps(history, indent=1))
                over_time = bool(budget_s) and clock.elapsed() >= budget_s
                stop = stale >= cfg.patience or interrupt.flag or over_time
            if world > 1:  # every rank must leave the loop together, or the next all-reduce hangs
                flag = torch.tensor([int(stop)], device=device)
                torch.distributed.broadcast(flag, 0)
                stop = bool(flag.item())
            if stop:
                break
    if rank != 0:
        return {}
    if best_state is not None:
        model.load_state_dict(best_state)
    return finish_run(model, data, split, cfg, pre, run, history)


def finish_run(model, data: CropSet, split: dict, cfg: TrainConfig, pre: PreprocessConfig, run: Path,
               history: list[dict]) -> dict:
    from .report import write_reports  # matplotlib only when reporting

    device = next(model.parameters()).device
    test = data.subset(split_index(data, split, "test"))
    t0 = time.time()
    probs = predict_probs(model, test, device, flip_tta=cfg.test_flip_tta)
    infer_rate = len(test) / max(time.time() - t0, 1e-6)
    metrics = {"test": classification_metrics(probs, test.labels, test.cells) if len(test) else {}}
    for src in sorted(set(test.source.tolist())):
        sel = test.source == src
        metrics[src] = classification_metrics(probs[sel], test.labels[sel], test.cells[sel])
    metrics["history"] = history
    metrics["train_images_per_s"] = float(np.median([h["images_per_s"] for h in history])) if history else None
    metrics["infer_images_per_s"] = infer_rate
    metrics["device"] = str(device)
    model_id = f"{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = {
        "sources": {s: int((data.source == s).sum()) for s in sorted(set(data.source.tolist()))},
        "split": "by case, seeded", "seed": cfg.seed, "epochs_run": len(history), "config": cfg.to_dict(),
        "train_images_per_s": metrics["train_images_per_s"], "device": str(device), "flip_tta": cfg.test_flip_tta,
    }
    short = {src: {k: metrics[src][k] for k in ("n_chromosomes", "n_cells", "accuracy", "cell_accuracy", "macro_auc_ovr")}
             for src in metrics if isinstance(metrics[src], dict) and "accuracy" in metrics[src]}
    meta = BundleMeta(model_id=model_id, architecture=cfg.arch, input_size=pre.size, preprocess=pre,
                      training=summary, metrics=short)
    save_bundle(model.cpu(), meta, run / "model")
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1))
    write_reports(metrics, history, run)
    return metrics
