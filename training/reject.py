"""``chromodesk-train reject``: give a classifier bundle its "not a chromosome" outcome.

Two kinds of head answer "this box holds no chromosome" (``--kind``): ``crops``, a small
network of its own (``inference.network.RejectNet``) on each box's crop and its five relative
features, and ``embedding``, a small head (``RejectHead``) on what the frozen crop network
already computes (its picture embedding, four flips averaged, and the relative features). The
crop network is never changed. The head is fitted on boxes taken from the metaphases themselves,
on the bundle's own split (test cases never read here):

- positives: every annotated chromosome, and the same boxes shifted a little (a detector's
  box is never exactly the annotator's);
- negatives: ``background`` (boxes of chromosome size or larger, up to a nucleus, that cover
  no annotated chromosome: empty background, debris, nuclei), ``classical`` (the classical
  detector's boxes that match no chromosome: nuclei, debris, merged clusters), ``detector``
  (the learned detector's false positives at a low score), ``merged`` (one box around two
  touching chromosomes) and ``fragment`` (a box around a third to a half of a chromosome).

Negatives of a detector's kind are taught only when they hold at most ``max_negative_cover`` of
any chromosome's box (a classical box around a cluster often isolates one whole chromosome). With
``box_features`` (default) the head also reads how each box sits on what it holds (``BOX_FEATURE_
NAMES``: a piece cut straight by the box edge, how much of the box it fills, the box's size).

Every box is preprocessed together with the cell's real chromosomes, so its relative
features are what the app computes. The rejection threshold is chosen on the validation
cases so that at most ``max_positive_reject`` of real chromosomes are rejected.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chromodesk.core.atomic import atomic_write_bytes, atomic_write_text
from chromodesk.core.document import Box
from chromodesk.core.imaging import load_gray
from chromodesk.core.labels import CLASS_INDEX
from chromodesk.core.preprocess import preprocess_cell
from chromodesk.pipeline import segment_of
from chromodesk.core.voc import find_annotation, read_voc
from chromodesk.inference.network import RejectConfig, RejectNet, make_reject, predict_batch, reject_net_probability

from .detect_metrics import iou_matrix
from .context import companion_beside

KINDS = ("background", "classical", "detector", "merged", "fragment")
# what the acceptance figure counts: boxes with no chromosome in them at all
EMPTY_KINDS = ("background", "classical", "detector")


@dataclass
class RejectTrainConfig:
    kind: str = "crops"  # "crops": a network of its own on the crops; "embedding": a head on the crop network's embedding
    hidden: int = 0  # 0: 32 (crops: the network's base width) or 64 (embedding: the head's width)
    epochs: int = 0  # 0: 30 (crops) or 100 (embedding)
    lr: float = 0.0  # 0: 2e-3 (crops) or 3e-3 (embedding)
    weight_decay: float = 1e-3
    max_positive_reject: float = 0.002  # share of real chromosomes the threshold may reject (validation)
    max_train_images: int = 400
    max_eval_images: int = 0  # validation / test images used (0 = all; quick looks only)
    # what the head is taught to reject: boxes with no chromosome in them. Fragments and merged
    # clusters are reported but not taught: a third of a chromosome 1 looks like a whole small
    # chromosome, and teaching it rejected 4% of real chromosomes on validation
    train_kinds: tuple[str, ...] = ("background", "classical", "detector")
    negatives_per_kind: int = 8  # per image and kind
    # taught negatives hold at most this share of any chromosome's box: a classical box around a
    # cluster often isolates one whole chromosome, which must not be taught as "not a chromosome"
    max_negative_cover: float = 0.15
    box_features: bool = True  # the head also reads BOX_FEATURE_NAMES (how the box sits on its content)
    seed: int = 0

    def __post_init__(self):
        crops = self.kind == "crops"
        self.hidden = self.hidden or (32 if crops else 64)
        self.epochs = self.epochs or (30 if crops else 100)
        self.lr = self.lr or (2e-3 if crops else 3e-3)

    def to_dict(self) -> dict:
        return asdict(self)


# -- negative boxes --------------------------------------------------------------------------
def _box_arr(boxes) -> np.ndarray:
    return np.array([b.as_list() if isinstance(b, Box) else list(b)[:4] for b in boxes], float).reshape(-1, 4)


def _covered(cand: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each candidate, the largest share of any true box that lies inside it."""
    if len(cand) == 0 or len(truth) == 0:
        return np.zeros(len(cand))
    ix = np.clip(np.minimum(cand[:, None, 2], truth[None, :, 2]) - np.maximum(cand[:, None, 0], truth[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(cand[:, None, 3], truth[None, :, 3]) - np.maximum(cand[:, None, 1], truth[None, :, 1]), 0, None)
    area = (truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])
    return (ix * iy / np.maximum(area[None, :], 1)).max(1)


def background_boxes(truth: np.ndarray, shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Boxes of chromosome size up to nucleus size that hold at most 15% of any chromosome."""
    h, w = shape
    sizes = truth[:, 2:] - truth[:, :2]
    out = []
    for _ in range(n * 30):
        if len(out) >= n:
            break
        bw, bh = sizes[rng.integers(len(sizes))] * rng.uniform(0.5, 3.0)
        bw, bh = min(bw, w - 2), min(bh, h - 2)
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        cand = np.array([[x0, y0, x0 + bw, y0 + bh]])
        if _covered(cand, truth)[0] <= 0.15:
            out.append(cand[0])
    return np.array(out).reshape(-1, 4)


def unmatched(found: np.ndarray, truth: np.ndarray, max_iou: float = 0.3) -> np.ndarray:
    if len(found) == 0:
        return found.reshape(-1, 4)
    m = iou_matrix(found, truth)
    return found[(m.max(1) if m.size else np.zeros(len(found))) < max_iou][:, :4]


def merged_boxes(truth: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One box around two chromosomes whose boxes touch or overlap."""
    m = iou_matrix(truth, truth)
    pairs = np.argwhere(np.triu(m > 0, 1))
    rng.shuffle(pairs)
    out = []
    for i, j in pairs[: n * 3]:
        u = np.array([min(truth[i, 0], truth[j, 0]), min(truth[i, 1], truth[j, 1]),
                      max(truth[i, 2], truth[j, 2]), max(truth[i, 3], truth[j, 3])])
        if iou_matrix(u[None], truth).max() < 0.5:
            out.append(u)
        if len(out) >= n:
            break
    return np.array(out).reshape(-1, 4)


def fragment_boxes(truth: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A third to a half of a chromosome's box along its long side."""
    out = []
    for i in rng.choice(len(truth), size=min(n, len(truth)), replace=False):
        x0, y0, x1, y1 = truth[i]
        f = rng.uniform(0.3, 0.5)
        if x1 - x0 >= y1 - y0:
            a = rng.uniform(x0, x1 - f * (x1 - x0))
            out.append([a, y0, a + f * (x1 - x0), y1])
        else:
            a = rng.uniform(y0, y1 - f * (y1 - y0))
            out.append([x0, a, x1, a + f * (y1 - y0)])
    return np.array(out).reshape(-1, 4)


def jittered(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The true boxes, each side moved by up to 12% of the box size (IoU stays above ~0.7)."""
    size = np.concatenate([truth[:, 2:] - truth[:, :2]] * 2, 1)
    return truth + rng.uniform(-0.12, 0.12, truth.shape) * size


# -- one image's rows --------------------------------------------------------------------------
def image_boxes(path: Path, rng: np.random.Generator, cfg: RejectTrainConfig, detector=None, jitter: bool = True):
    """Every box made from one image: (grey image, boxes, kind, reject target, class label, the
    largest share of a chromosome's box inside each).
    All of the randomness of a row is here, so the boxes can be made again from the seed."""
    from chromodesk.core.detect import detect_chromosomes

    img = load_gray(path)
    ann = read_voc(find_annotation(path), (img.width, img.height))
    objs = [o for o in ann.objects if not o.box.is_empty()]
    truth = _box_arr([o.box for o in objs])
    labels = np.array([CLASS_INDEX.get(o.label, -1) if o.label else -1 for o in objs])
    n = cfg.negatives_per_kind
    negs = {"background": background_boxes(truth, img.gray.shape, n, rng),
            "classical": unmatched(_box_arr(detect_chromosomes(img.gray)), truth)[:n],
            "merged": merged_boxes(truth, n // 2, rng),
            "fragment": fragment_boxes(truth, n // 2, rng)}
    if detector is not None:
        negs["detector"] = unmatched(detector.detect_array(img.gray, threshold=0.1), truth)[:n]
    h, w = img.gray.shape

    def boxes(arr):
        return [Box(int(a), int(b), int(np.ceil(c)), int(np.ceil(d))).clipped(w, h) for a, b, c, d in arr]

    pos_boxes = boxes(truth)
    # the real chromosomes, a quarter of them again shifted a little, and the negatives, all
    # preprocessed together (each row's features are relative to all of them, as in the app
    # when a detector adds a few false boxes)
    shift_idx = rng.choice(len(truth), size=len(truth) // 4, replace=False) if jitter and len(truth) else np.zeros(0, int)
    shift_boxes = boxes(jittered(truth[shift_idx], rng)) if len(shift_idx) else []
    neg_list = [(k, b) for k, arr in negs.items() for b in boxes(arr)]
    neg_list = [(k, b) for k, b in neg_list if not b.is_empty() and b.width >= 4 and b.height >= 4]
    kind = ["chromosome"] * len(truth) + ["shifted"] * len(shift_boxes) + [k for k, _ in neg_list]
    target = np.concatenate([np.zeros(len(truth) + len(shift_boxes)), np.ones(len(neg_list))])
    label = np.concatenate([labels, labels[shift_idx], np.full(len(neg_list), -1)])
    all_boxes = pos_boxes + shift_boxes + [b for _, b in neg_list]
    return img.gray, all_boxes, kind, target, label, _covered(_box_arr(all_boxes), truth)


def image_rows(path: Path, classifier, rng: np.random.Generator, cfg: RejectTrainConfig, detector=None,
               jitter: bool = True) -> dict:
    """Embeddings, features, reject target, kind and class label of every box made from one image."""
    gray, boxes, kind, target, label, covered = image_boxes(path, rng, cfg, detector, jitter)
    crops = preprocess_cell(gray, boxes, classifier.preprocess, segment=segment_of(classifier))
    feats = crops.features.astype(np.float32)
    emb, probs = embed(classifier, crops.images, feats)
    return {"emb": emb, "img": crops.images, "feat": feats, "rfeat": crops.reject_features, "target": target,
            "kind": np.array(kind), "label": label, "covered": covered, "probs": probs, "image": np.array([path.stem] * len(feats))}


@torch.inference_mode()
def embed(classifier, images: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crop network's embeddings (four flips averaged) and probabilities, as the app computes
    them (the bundle's own network: a companion's probabilities are not averaged in here)."""
    model = classifier.model
    embs, probs = [], []
    for s in range(0, len(images), 64):
        x = torch.from_numpy(np.ascontiguousarray(images[s : s + 64])).to(classifier.device)
        f = torch.from_numpy(features[s : s + 64]).to(classifier.device)
        p, e = predict_batch(model, x, f, classifier.flip_tta, with_embedding=True)
        embs.append(e.cpu().numpy()), probs.append(p.cpu().numpy())
    return np.concatenate(embs), np.concatenate(probs)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """Each image's boxes from its own stream, so images can be made in any order, in parallel."""
    return np.random.default_rng([seed, index])


# a worker process's own classifier and detector (loaded once per process)
_WORKER: dict = {}


def _worker_init(classifier_path: str, detector_path: str | None) -> None:
    from chromodesk.inference.classifier import Classifier
    from chromodesk.inference.detector import Detector

    torch.set_num_threads(1)
    _WORKER["classifier"] = Classifier(classifier_path, device="cpu")
    _WORKER["detector"] = Detector(detector_path, device="cpu") if detector_path else None


def _worker_rows(job) -> dict:
    path, cfg, seed, index, jitter = job
    return image_rows(path, _WORKER["classifier"], image_rng(seed, index), cfg, _WORKER["detector"], jitter)


def collect(paths: list[Path], classifier, cfg: RejectTrainConfig, detector, seed: int, jitter: bool, quiet: bool,
            cache: Path | None = None, workers: int = 1) -> dict:
    """Every image's rows; kept in ``cache`` (an .npz) so that refitting the head reads them back.
    With ``workers`` > 1 the images are preprocessed in that many processes (the same rows)."""
    import hashlib

    key = hashlib.sha256("|".join(["rows-v3", classifier.model_id, getattr(detector, "model_id", "none"), str(seed), str(jitter),
                                   str(cfg.negatives_per_kind)] + [str(p) for p in paths]).encode()).hexdigest()[:12]
    path = cache / f"reject-rows-{key}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    progress = dict(desc="boxes", unit="image", total=len(paths), disable=quiet, mininterval=5.0)
    # worker processes only on the CPU: on a GPU one process keeps the device busy
    if workers > 1 and str(classifier.device) == "cpu":
        jobs = [(p, cfg, seed, i, jitter) for i, p in enumerate(paths)]
        init = (str(classifier.path), str(detector.path) if detector is not None else None)
        # spawn, not fork: a forked child of a process that has run torch can hang in its thread pool
        with multiprocessing.get_context("spawn").Pool(workers, _worker_init, init) as pool:
            rows = list(tqdm(pool.imap(_worker_rows, jobs, chunksize=2), **progress))
    else:
        rows = [image_rows(p, classifier, image_rng(seed, i), cfg, detector, jitter)
                for i, p in tqdm(list(enumerate(paths)), **progress)]
    out = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, **out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    return out


# each part's random stream (added to the config's seed) and whether its real chromosomes are
# also taught shifted; the test part is only measured
PART_STREAMS = {"train": (0, True), "val": (1, True), "test": (2, False)}


def part_rows(part: str, paths: list[Path], classifier, cfg: RejectTrainConfig, detector, quiet: bool,
              workers: int = 1) -> dict:
    """One part's rows as the tool makes and caches them (in ``training.data.CACHE_DIR``)."""
    from .data import CACHE_DIR

    offset, jitter = PART_STREAMS[part]
    return collect(paths, classifier, cfg, detector, cfg.seed + offset, jitter, quiet, CACHE_DIR, workers)


# -- fitting ----------------------------------------------------------------------------------
def fit_head(train: dict, cfg: RejectTrainConfig, embedding_width: int, quiet: bool = True) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    keep = (train["target"] == 0) | (np.isin(train["kind"], cfg.train_kinds) & (train["covered"] <= cfg.max_negative_cover))
    train = {k: v[keep] for k, v in train.items()}
    rcfg = RejectConfig(hidden=cfg.hidden, kind=cfg.kind, box_features=cfg.box_features)
    if cfg.kind == "crops":
        return fit_reject_net(train, cfg, make_reject(rcfg, embedding_width, train["feat"].shape[1]), quiet)
    head = make_reject(rcfg, embedding_width, train["feat"].shape[1])
    x_e = torch.from_numpy(train["emb"]).float()
    x_f = torch.from_numpy(head_features(train, cfg.box_features)).float()
    y = torch.from_numpy(train["target"]).float()
    pos_weight = (y == 0).sum() / (y == 1).sum().clamp(min=1)  # balance the two outcomes
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        head.train()
        for idx in torch.randperm(len(y), generator=gen).split(1024):
            loss = F.binary_cross_entropy_with_logits(head(x_e[idx], x_f[idx]), y[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    head.eval()
    return head


def fit_reject_net(train: dict, cfg: RejectTrainConfig, net: RejectNet, quiet: bool) -> RejectNet:
    """The crop head from random weights: every batch in one of the four views the app averages."""
    from chromodesk.inference.network import to_input

    x_i = torch.from_numpy(train["img"])
    x_f = torch.from_numpy(head_features(train, cfg.box_features)).float()
    y = torch.from_numpy(train["target"]).float()
    pos_weight = (y == 0).sum() / (y == 1).sum().clamp(min=1)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = (len(y) + 127) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * batches, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.epochs), desc="reject net", unit="epoch", disable=quiet):
        net.train()
        for idx in torch.randperm(len(y), generator=gen).split(128):
            x = to_input(x_i[idx])
            view = int(torch.randint(4, (1,), generator=gen))
            x = (x, x.flip(3), x.flip(2), x.flip((2, 3)))[view]
            loss = F.binary_cross_entropy_with_logits(net(x, x_f[idx]), y[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def head_features(rows: dict, box_features: bool) -> np.ndarray:
    return rows["rfeat"] if box_features else rows["feat"]


@torch.inference_mode()
def reject_scores(head: torch.nn.Module, rows: dict, box_features: bool) -> np.ndarray:
    feats = torch.from_numpy(head_features(rows, box_features)).float()
    if isinstance(head, RejectNet):
        images = torch.from_numpy(rows["img"])
        return torch.cat([reject_net_probability(head, images[s : s + 256], feats[s : s + 256], True)
                          for s in range(0, len(images), 256)]).double().numpy()
    return torch.sigmoid(head(torch.from_numpy(rows["emb"]).float(), feats).double()).numpy()


def choose_threshold(scores: np.ndarray, rows: dict, max_positive_reject: float) -> float:
    """The lowest threshold that rejects at most ``max_positive_reject`` of the real chromosomes."""
    pos = np.sort(scores[rows["target"] == 0])
    k = int(np.floor(max_positive_reject * len(pos)))
    t = pos[len(pos) - k - 1] if len(pos) > k else 0.5
    return float(min(max(np.nextafter(t, 1.0), 0.05), 0.9999))


def reject_report(scores: np.ndarray, rows: dict, threshold: float) -> dict:
    """What the threshold does: per negative kind the share rejected; for real chromosomes the
    share rejected and the classifier's top-1 accuracy with a rejection counted as an error."""
    rej = scores >= threshold
    out = {"threshold": threshold, "negatives": {}}
    for k in KINDS:
        sel = rows["kind"] == k
        if sel.any():
            out["negatives"][k] = {"n": int(sel.sum()), "rejected": float(rej[sel].mean())}
    empty = np.isin(rows["kind"], EMPTY_KINDS)
    out["empty_boxes_rejected"] = float(rej[empty].mean()) if empty.any() else None
    out["empty_boxes_n"] = int(empty.sum())
    if "covered" in rows:
        # what the acceptance names (empty background, debris, nuclei): boxes of any source
        # that hold at most 15% of any chromosome's box
        nothing = empty & (rows["covered"] <= 0.15)
        out["nothing_inside_rejected"] = float(rej[nothing].mean()) if nothing.any() else None
        out["nothing_inside_n"] = int(nothing.sum())
        out["nothing_inside_by_kind"] = {k: float(rej[nothing & (rows["kind"] == k)].mean())
                                         for k in EMPTY_KINDS if (nothing & (rows["kind"] == k)).any()}
    pos = (rows["kind"] == "chromosome") & (rows["label"] >= 0)
    right = rows["probs"][pos].argmax(1) == rows["label"][pos]
    out["chromosomes_n"] = int(pos.sum())
    out["chromosomes_rejected"] = float(rej[pos].mean())
    out["accuracy_without_reject"] = float(right.mean())
    out["accuracy_with_reject"] = float((right & ~rej[pos]).mean())
    out["accuracy_loss_points"] = 100 * (out["accuracy_without_reject"] - out["accuracy_with_reject"])
    shifted = rows["kind"] == "shifted"
    if shifted.any():
        out["shifted_chromosomes_rejected"] = float(rej[shifted].mean())
    return out


def split_paths(data: str, split: dict, part: str) -> list[Path]:
    from .data import _voc_images, case_of_image

    root = Path(data)
    return [p for p in _voc_images(root) if split.get(f"{root.name}/{case_of_image(p.stem)}") == part
            and find_annotation(p) is not None]


def fit_reject_bundle(model: str | None, data: str, out: str, cfg: RejectTrainConfig = RejectTrainConfig(),
                      detector: str | None = None, evaluate_test: bool = True, quiet: bool = False,
                      workers: int = 1) -> dict:
    """Fit the head on the bundle's training cases, choose the threshold on its validation cases,
    write ``out`` (the same classifier plus the head); with ``evaluate_test`` also report the test cases."""
    from chromodesk.core.errors import InputError
    from chromodesk.inference.bundle import save_bundle
    from chromodesk.inference.detector import Detector

    from .evaluate import classifier_with_split

    log = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    t0 = time.time()
    classifier, split_path, split = classifier_with_split(model, "the reject head is fitted on its training cases")
    det = Detector(detector, device="auto") if detector else None
    train_paths = split_paths(data, split, "train")
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_train_images and len(train_paths) > cfg.max_train_images:
        train_paths = sorted(rng.choice(train_paths, cfg.max_train_images, replace=False).tolist())
    val_paths = split_paths(data, split, "val")
    test_paths = split_paths(data, split, "test")
    if cfg.max_eval_images:
        val_paths, test_paths = val_paths[: cfg.max_eval_images], test_paths[: cfg.max_eval_images]
    if not train_paths or not val_paths:
        raise InputError(split_path, "the split has no training or no validation images in the given data")
    log(f"{len(train_paths)} training / {len(val_paths)} validation images")
    train = part_rows("train", train_paths, classifier, cfg, det, quiet, workers)
    val = part_rows("val", val_paths, classifier, cfg, det, quiet, workers)
    head = fit_head(train, cfg, classifier.model.embedding_width, quiet)
    threshold = choose_threshold(reject_scores(head, val, cfg.box_features), val, cfg.max_positive_reject)
    result = {"config": cfg.to_dict(), "n_train_rows": int(len(train["target"])), "threshold": threshold,
              "val": reject_report(reject_scores(head, val, cfg.box_features), val, threshold)}
    log(f"threshold {threshold:.3f}: validation {json.dumps(result['val'])}")
    if evaluate_test:
        test = part_rows("test", test_paths, classifier, cfg, det, quiet, workers)
        result["test"] = reject_report(reject_scores(head, test, cfg.box_features), test, threshold)
        log(f"test {json.dumps(result['test'])}")
    net, meta = classifier.model.cpu(), classifier.meta
    rcfg = RejectConfig(hidden=cfg.hidden, threshold=threshold, kind=cfg.kind, box_features=cfg.box_features)
    net.reject, net.reject_cfg, meta.reject = head, rcfg, rcfg
    meta.model_id = f"{meta.model_id.split('+rej')[0]}+rej{time.strftime('%Y%m%d-%H%M%S')}"
    meta.training = dict(meta.training, reject={"config": cfg.to_dict(), "detector": det.model_id if det else None,
                                                "val": result["val"]})
    if "test" in result:
        meta.metrics = dict(meta.metrics, reject_test=result["test"])
    companion_beside(classifier, out)
    out_json = save_bundle(net, meta, out)
    split_out = out_json.with_suffix("").with_suffix(".split.json")
    if split_out.resolve() != split_path.resolve():
        split_out.write_text(split_path.read_text())
    result["bundle"], result["seconds"] = str(out_json), time.time() - t0
    atomic_write_text(out_json.with_suffix("").with_suffix(".reject.json"), json.dumps(result, indent=1))
    return result
