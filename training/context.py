"""``chromodesk-train context``: fit the cell-context stage (``inference.cell_context``) of a bundle.

The crop network stays frozen. Its probabilities for the training cells are taken on
augmented crops (as in training, one random view per pass): on clean training crops it
is more sure of itself than on cells it has never seen, and the context stage would
learn to trust it too much. Each training cell is also altered at random (chromosomes
dropped, a chromosome of another cell added, a random part kept) so that the stage
learns to compare chromosomes, not to force two of each. The epoch with the best
per-chromosome accuracy on the validation cells (clean crops, four flips, as the app
sees them) is kept. Several members (seeds) are trained on the same views and averaged.

By default the stage has two members: one reads the cell's joint assignment, one does not.
Measured on the validation cells (same views): one member without it 96.44%, one with it
97.13% but sure of its mistakes (at the app's 0.90 "sure" mark 0.68% of the sure ones are
wrong, against 0.40%); the default pair (the shipped stage) 96.96% with 0.36% wrong among
the sure ones.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from chromodesk.core.karyotype import AssignmentConfig
from chromodesk.inference.cell_context import CellContext, ContextConfig, assignment_onehot

from .augment import AugmentConfig, augment
from .data import cell_groups


@dataclass
class ContextTrainConfig:
    epochs: int = 60
    batch_cells: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    drop_p: float = 0.5  # share of cells that lose up to a tenth of their chromosomes
    duplicate_p: float = 0.3  # share of cells that gain one chromosome from another cell
    subset_p: float = 0.05  # share of cells cut to a random part (a few boxes drawn by hand)
    aug_passes: int = 2  # augmented views of every training crop
    seed: int = 0
    # two members, one reading the cell's joint assignment, one not (see the module docstring)
    model: ContextConfig = field(default_factory=lambda: ContextConfig(members=2, assignment=app_penalties(),
                                                                       assignment_members=1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def app_penalties() -> tuple[float, float, float]:
    a = AssignmentConfig()  # the penalties the app assigns with (chosen by `calibrate`)
    return (a.gain_penalty, a.loss_penalty, a.sex_penalty)


@torch.inference_mode()
def augmented_probabilities(model, images: np.ndarray, features: np.ndarray, aug: AugmentConfig,
                            seed: int, batch: int = 256) -> np.ndarray:
    """One random training-style view per crop through the crop network: N x C probabilities."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s : s + batch]).unsqueeze(1).float().div_(255.0)
        f = torch.from_numpy(np.asarray(features[s : s + batch], np.float32))
        x, f = augment(x, f, aug, gen)
        out.append(torch.softmax(model((x * 2 - 1).to(device), f.to(device)).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _altered_cell(rng: np.random.Generator, idx: np.ndarray, donors: np.ndarray, cfg: ContextTrainConfig) -> np.ndarray:
    idx = idx.copy()
    if rng.random() < cfg.subset_p and len(idx) > 2:
        idx = rng.choice(idx, size=int(rng.integers(2, len(idx) + 1)), replace=False)
    elif rng.random() < cfg.drop_p and len(idx) > 10:
        k = int(rng.integers(1, max(2, len(idx) // 10 + 1)))
        idx = np.delete(idx, rng.choice(len(idx), size=k, replace=False))
    if rng.random() < cfg.duplicate_p and len(donors):
        idx = np.append(idx, donors[rng.integers(len(donors))])  # an extra chromosome: a gain
    return idx


def _batch(rows: list[np.ndarray], probs: np.ndarray, features: np.ndarray, labels: np.ndarray | None,
           assignment: tuple[float, float, float] | None):
    """Padded tensors for a batch of cells: log-probabilities, features, padding mask, labels and,
    for a stage that reads it, each cell's joint assignment (None otherwise)."""
    n = max(len(r) for r in rows)
    b = len(rows)
    logp = np.zeros((b, n, probs.shape[1]), np.float32)
    feats = np.zeros((b, n, features.shape[1]), np.float32)
    pad = np.ones((b, n), bool)
    y = np.full((b, n), -100, np.int64)
    assigned = np.zeros((b, n, probs.shape[1]), np.float32) if assignment else None
    for i, r in enumerate(rows):
        logp[i, : len(r)] = np.log(np.clip(probs[r], 1e-6, 1.0))
        feats[i, : len(r)] = features[r]
        pad[i, : len(r)] = False
        if labels is not None:
            y[i, : len(r)] = labels[r]
        if assignment:
            assigned[i, : len(r)] = assignment_onehot(probs[r], assignment)
    return (torch.from_numpy(logp), torch.from_numpy(feats), torch.from_numpy(pad), torch.from_numpy(y),
            None if assigned is None else torch.from_numpy(assigned))


@torch.inference_mode()
def refine_cells(context: CellContext, probs: np.ndarray, features: np.ndarray, groups: list[np.ndarray],
                 batch_cells: int = 64) -> np.ndarray:
    """Context-stage probabilities for every row, each cell on its own."""
    context.eval()
    out = np.array(probs, dtype=np.float32, copy=True)
    for s in range(0, len(groups), batch_cells):
        rows = groups[s : s + batch_cells]
        logp, feats, pad, _, assigned = _batch(rows, probs, features, None, context.cfg.assignment)
        p = torch.softmax(context(logp, feats, pad, assigned), -1).numpy()
        for i, r in enumerate(rows):
            out[r] = p[i, : len(r)]
    return out


def fit_context(train_views: list[np.ndarray], features: np.ndarray, labels: np.ndarray,
                train_groups: list[np.ndarray], val_probs: np.ndarray, val_groups: list[np.ndarray],
                cfg: ContextTrainConfig = ContextTrainConfig(), log=print) -> tuple[CellContext, list[dict]]:
    """``train_views``: several N x C probability arrays (row-aligned with ``features``); each
    chromosome of a training batch takes one of them at random."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # one member; fit_context_bundle trains several on the same views
    context = CellContext(val_probs.shape[1], features.shape[1], replace(cfg.model, members=1, assignment_members=None))
    opt = torch.optim.AdamW(context.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, -(-len(train_groups) // cfg.batch_cells))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    flat = np.concatenate(train_groups)
    val_rows = np.concatenate(val_groups)
    history, best, best_state = [], -1.0, None
    stacked = np.stack(train_views)  # V x N x C
    probs = np.empty_like(val_probs)  # one buffer: each step fills (and reads) only its cells' rows
    for epoch in range(cfg.epochs):
        t0 = time.time()
        context.train()
        order = rng.permutation(len(train_groups))
        loss_sum, count = 0.0, 0
        for s in range(0, len(order), cfg.batch_cells):
            rows = [_altered_cell(rng, train_groups[g], flat, cfg) for g in order[s : s + cfg.batch_cells]]
            used = np.concatenate(rows)
            probs[used] = stacked[rng.integers(len(stacked), size=len(used)), used]  # a random view per chromosome
            logp, feats, pad, y, assigned = _batch(rows, probs, features, labels, cfg.model.assignment)
            logits = context(logp, feats, pad, assigned)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   label_smoothing=cfg.label_smoothing, ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(rows)
            count += len(rows)
        refined = refine_cells(context, val_probs, features, val_groups)
        acc = float((refined[val_rows].argmax(1) == labels[val_rows]).mean())
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(count, 1), "val_acc": acc,
                        "seconds": time.time() - t0})
        log(f"context epoch {epoch + 1}/{cfg.epochs}: loss {loss_sum / max(count, 1):.4f}, validation {acc:.4f}")
        if acc > best:
            best, best_state = acc, {k: v.detach().clone() for k, v in context.state_dict().items()}
    context.load_state_dict(best_state)
    context.eval()
    return context, history


def attach_companion(classifier, companion: str, out: str, weight: float = 0.5) -> None:
    """Make ``companion``'s crop network (context and reject stages dropped) the classifier's
    companion, written beside ``out`` as ``<out>-companion``: from now on the two networks'
    probabilities are averaged (``weight`` is the companion's share). It must read the
    classifier's crops without the outline cut (``companion_config``)."""
    from chromodesk.core.errors import InputError
    from chromodesk.core.preprocess import companion_config
    from chromodesk.inference.bundle import bundle_paths, load_bundle, save_bundle

    net, meta = load_bundle(companion)
    if meta.preprocess != companion_config(classifier.preprocess) or meta.feature_names != classifier.meta.feature_names:
        raise InputError(bundle_paths(companion)[0], "a companion must read the model's crops without the outline cut")
    net.context = net.reject = None
    meta.context = meta.reject = None
    meta.model_id = meta.model_id.split("+ctx")[0].split("+rej")[0]  # the stages named after it are gone
    target = bundle_paths(out)[0]
    target = target.with_name(target.stem + "-companion.json")
    meta.training = {**meta.training, "companion_of": target.name.replace("-companion", "")}
    save_bundle(net, meta, target)
    classifier.meta.companion = {"bundle": target.name, "weights_sha256": meta.weights_sha256, "weight": weight}
    classifier.meta.preprocess = replace(classifier.preprocess, companion_crops=True)
    classifier.companion = net.to(classifier.device).eval()


def companion_beside(classifier, out: str) -> None:
    """A refitted bundle written elsewhere takes its companion's files along."""
    import shutil

    from chromodesk.inference.bundle import bundle_paths

    if not classifier.meta.companion:
        return
    src = bundle_paths(classifier.path)[0].parent / classifier.meta.companion["bundle"]
    dst = bundle_paths(out)[0].parent / src.name
    if src.resolve() != dst.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        for a, b in zip(bundle_paths(src), bundle_paths(dst)):
            shutil.copyfile(a, b)


def fit_context_bundle(model: str | None, data_paths: list[str], out: str, cfg: ContextTrainConfig = ContextTrainConfig(),
                       quiet: bool = False, companion: str | None = None) -> dict:
    """Fit the context stage for a bundle on its own split's training cells; write ``out`` (a new
    bundle: the same crop network plus the stage) and its split beside it. Test cells are never read.
    ``companion``: a second crop network bundle to average with the bundle's own (``attach_companion``);
    the stage is then fitted on the average."""
    import shutil

    from chromodesk.core.errors import InputError
    from chromodesk.inference.bundle import save_bundle

    from .data import load_data, split_index
    from .evaluate import classifier_with_split

    log = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    t0 = time.time()
    classifier, split_path, split = classifier_with_split(model, "the context stage is fitted on its training cells")
    if companion:
        attach_companion(classifier, companion, out)
    else:
        companion_beside(classifier, out)
    data, _ = load_data(data_paths, classifier.preprocess, quiet)
    train, val = split_index(data, split, "train"), split_index(data, split, "val")
    if not train.any() or not val.any():
        raise InputError(split_path, "the split has no training or no validation cells in the given data")
    groups = cell_groups(data.source, data.cells)
    train_groups = [g for g in groups if train[g[0]]]
    val_groups = [g for g in groups if val[g[0]]]
    used = np.flatnonzero(val)  # training chromosomes are only ever seen augmented (below)
    log(f"crop network on {len(used)} validation chromosomes")
    clean = np.zeros((len(data), len(classifier.meta.classes)), np.float32)
    pair = data.companion
    clean[used] = classifier.predict_arrays(data.images[used], data.features[used],
                                            companion=None if pair is None else (pair[0][used], pair[1][used]))
    rows = np.flatnonzero(train)
    views = []
    for k in range(max(1, cfg.aug_passes)):
        log(f"augmented view {k + 1}/{cfg.aug_passes} of the training chromosomes")
        view = clean.copy()
        view[rows] = augmented_probabilities(classifier.model, data.images[rows], data.features[rows], AugmentConfig(),
                                             seed=cfg.seed * 100 + k)
        if pair is not None:  # the stage reads what the app gives it: both networks averaged
            w = classifier.meta.companion["weight"]
            view[rows] = (1 - w) * view[rows] + w * augmented_probabilities(
                classifier.companion, pair[0][rows], pair[1][rows], AugmentConfig(), seed=cfg.seed * 100 + k + 50)
        views.append(view)
    context = CellContext(clean.shape[1], data.features.shape[1], cfg.model)
    history = []
    for m in range(cfg.model.members):  # the same views, another seed
        reads = cfg.model.reads_assignment(m)
        log(f"member {m + 1}/{cfg.model.members}" + (" (reads the assignment)" if reads else ""))
        alone = replace(cfg.model, members=1, assignment=cfg.model.assignment if reads else None, assignment_members=None)
        one = replace(cfg, seed=cfg.seed + m, model=alone)
        member, member_history = fit_context(views, data.features, data.labels, train_groups, clean, val_groups, one, log)
        context.members[m].load_state_dict(member.members[0].state_dict())
        history.append(member_history)
    val_rows = np.concatenate(val_groups)
    before = float((clean[val_rows].argmax(1) == data.labels[val_rows]).mean())
    refined = refine_cells(context, clean, data.features, val_groups)
    after = float((refined[val_rows].argmax(1) == data.labels[val_rows]).mean())
    net, meta = classifier.model.cpu(), classifier.meta
    net.context = context
    base_id, _, old_stage = meta.model_id.partition("+ctx")
    later = old_stage.split("+", 1)[1] if "+" in old_stage else ""  # e.g. the "not a chromosome" network's +rej..., kept
    meta.model_id = f"{base_id}+ctx{time.strftime('%Y%m%d-%H%M%S')}" + (f"+{later}" if later else "")
    meta.context = cfg.model
    summary = {"config": cfg.to_dict(), "val_accuracy_crop_network": before, "val_accuracy_with_context": after,
               "val_accuracy_members": [max(h["val_acc"] for h in mh) for mh in history], "epochs": history,
               "train_cells": len(train_groups), "val_cells": len(val_groups), "seconds": time.time() - t0,
               "from_bundle": base_id}
    meta.training = {**meta.training, "cell_context": summary}
    json_path = save_bundle(net, meta, out)
    split_copy = json_path.with_suffix("").with_suffix(".split.json")
    if split_path.resolve() != split_copy.resolve():
        shutil.copyfile(split_path, split_copy)
    log(f"validation accuracy {before:.4f} -> {after:.4f}; wrote {json_path}")
    return {"bundle": str(json_path), **{k: v for k, v in summary.items() if k != "epochs"}}
