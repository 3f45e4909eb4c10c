"""Which end is the p-arm: a small network that tells an upright chromosome from the same one
turned upside down (issue 14's orientation; the karyogram stands each chromosome p-arm up by it).

    python -m training.orientation --data ../shared/datasets/gband-karyogram-chromosomes \
        --out runs/orientation [--epochs 12] [--json docs/orientation-test.json]
    python scripts/ship_orientation.py runs/orientation      # -> models/chromodesk-orientation.*

The run folder gets ``best.pt`` (checkpoint) and the bundle ``orientation.json`` +
``orientation.safetensors`` with the test figures in its metadata.

Truth: the crops of ``gband-karyogram-chromosomes`` come from technicians' karyograms, upright
with the p-arm up. Each crop is preprocessed without the upright turn (it is upright already),
so "up" is the crop as it is and "down" the crop turned 180 degrees. The network also reads the
chromosome's class (known once the cell is labelled: the karyogram is drawn from labels), because
where the centromere sits differs by class. Split by case (seed 0, the shipped classifier's split
of this source); chosen on validation; test reported once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import PreprocessConfig
from chromodesk.inference.orientation import OrientationMeta, save_orientation
from chromodesk.inference.orientation_net import OrientationNet

from .data import load_source, make_split, split_index

__all__ = ["OrientationNet", "main", "make_bundle"]  # OrientationNet lives in the inference layer now


def batches(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, batch: int, augment: bool):
    """(x, class, target): every crop once, upright or turned 180 degrees at random."""
    order = rng.permutation(len(images))
    for s in range(0, len(order), batch):
        idx = np.sort(order[s : s + batch])
        x = torch.from_numpy(images[idx]).float().div_(127.5).sub_(1.0).unsqueeze(1)
        down = torch.from_numpy(rng.random(len(idx)) < 0.5)
        x = torch.where(down[:, None, None, None], x.flip(2).flip(3), x)
        if augment:  # mirror left-right keeps p and q where they are; a little shift and contrast
            mirror = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            x = x * torch.from_numpy(rng.uniform(0.8, 1.2, (len(idx), 1, 1, 1))).float()
            x = torch.roll(x, shifts=int(rng.integers(-3, 4)), dims=2)
        yield x, torch.from_numpy(labels[idx]), (~down).float()


@torch.inference_mode()
def accuracy_both_ways(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Each crop judged upright and turned: the share of right answers over both."""
    model.eval()
    right = 0
    for s in range(0, len(images), 512):
        x = torch.from_numpy(images[s : s + 512]).float().div_(127.5).sub_(1.0).unsqueeze(1)
        y = torch.from_numpy(labels[s : s + 512])
        right += int((model(x, y) > 0).sum()) + int((model(x.flip(2).flip(3), y) <= 0).sum())
    return right / max(2 * len(images), 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_source(args.data, PreprocessConfig(upright=False))
    split = make_split(data, 0)
    parts = {k: data.subset(split_index(data, split, k)) for k in ("train", "val", "test")}
    model = OrientationNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(parts["train"]) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    history, best, t0 = [], -1.0, time.time()
    for epoch in range(args.epochs):
        model.train()
        seen, loss_sum = 0, 0.0
        for x, y, target in batches(parts["train"].images, parts["train"].labels, rng, args.batch_size, True):
            loss = F.binary_cross_entropy_with_logits(model(x, y), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
        val = accuracy_both_ways(model, parts["val"].images, parts["val"].labels)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "val_accuracy": val,
                        "seconds": round(time.time() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)
        if val > best:
            best = val
            torch.save(model.state_dict(), out / "best.pt")
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    per_class = {}
    for k, name in enumerate(CLASSES):
        sel = parts["test"].labels == k
        per_class[name] = round(accuracy_both_ways(model, parts["test"].images[sel], parts["test"].labels[sel]), 4)
    result = {
        "data": Path(args.data).name, "split": "by case, seed 0 (the shipped classifier's)",
        "crops": {k: len(v) for k, v in parts.items()},
        "cases": {k: len(set(v.cases.tolist())) for k, v in parts.items()},
        "best_val_accuracy": round(best, 4),
        "test_accuracy": round(accuracy_both_ways(model, parts["test"].images, parts["test"].labels), 4),
        "test_accuracy_per_class": per_class, "epochs": args.epochs, "history": history,
        "parameters": sum(p.numel() for p in model.parameters()), "threads": args.threads,
        "note": "each test crop judged upright and turned 180 degrees; the class is the annotated one",
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "test_accuracy_per_class")}))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"bundle: {make_bundle(model, result, out / 'orientation')}")
    return 0


def make_bundle(model: nn.Module, result: dict, stem: Path, model_id: str | None = None) -> Path:
    """The run as a bundle (safetensors + JSON): the report's test figures go into its metadata."""
    width = model.features[0].out_channels
    model_id = model_id or f"orientation-w{width}-{time.strftime('%Y%m%d-%H%M%S')}"
    keep = ("data", "split", "crops", "cases", "best_val_accuracy", "epochs", "parameters", "threads")
    training = {k: result[k] for k in keep if k in result}
    training["preprocess_note"] = "karyogram crops, already upright: preprocessed with upright=False"
    metrics = {"test": {"accuracy": result.get("test_accuracy"), "accuracy_per_class": result.get("test_accuracy_per_class"),
                        "crops": (result.get("crops") or {}).get("test"), "cases": (result.get("cases") or {}).get("test"),
                        "note": result.get("note", "")}}
    meta = OrientationMeta(model_id=model_id, width=width,
                           preprocess=PreprocessConfig(upright=False), training=training, metrics=metrics)
    return save_orientation(model.cpu().eval(), meta, stem)


if __name__ == "__main__":
    raise SystemExit(main())
