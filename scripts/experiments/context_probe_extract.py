"""Context-stage experiments, step 1 (about 21 min here): the crop network's probabilities and
backbone embeddings for the validation cells (clean, four flips averaged) and two augmented
views of the training cells (the same views `chromodesk-train context` draws), saved to
runs/probe/arrays.npz for ``context_probe.py``. Run from the repository root:

    .venv/bin/python scripts/experiments/context_probe_extract.py
"""
import json, time
from pathlib import Path
import numpy as np, torch
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import to_input
from training.augment import AugmentConfig, augment
from training.data import load_data, split_index, cell_groups
Path("runs/probe").mkdir(parents=True, exist_ok=True)
torch.set_num_threads(2)
DATA = ["../shared/datasets/tseng2023-gband-metaphases", "../shared/datasets/gband-karyogram-chromosomes",
        "../shared/datasets/bioimlab-qband-chromosomes"]
clf = Classifier("runs/main2/model.json", device="cpu")
split = json.load(open("runs/main2/split.json"))
data, _ = load_data(DATA, clf.preprocess, True)
train, val = split_index(data, split, "train"), split_index(data, split, "val")
model = clf.model
@torch.inference_mode()
def run(images, feats, aug_seed=None, bs=256):
    gen = torch.Generator().manual_seed(aug_seed) if aug_seed is not None else None
    P, E = [], []
    for s in range(0, len(images), bs):
        x = torch.from_numpy(images[s:s+bs]).unsqueeze(1).float().div_(255.0)
        f = torch.from_numpy(np.asarray(feats[s:s+bs], np.float32))
        if gen is not None:
            x, f = augment(x, f, AugmentConfig(), gen)
        x = x * 2 - 1
        views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))])
        emb = model.backbone(views)
        logits = model.head(torch.cat([emb, f.repeat(4, 1)], 1))
        p = torch.softmax(logits.float(), 1).view(4, len(x), -1)
        P.append((p[0] if gen is not None else p.mean(0)).numpy())
        E.append(emb.float().view(4, len(x), -1).mean(0).numpy().astype(np.float16))
    return np.concatenate(P), np.concatenate(E)
t = time.time()
vr, tr = np.flatnonzero(val), np.flatnonzero(train)
vp, ve = run(data.images[vr], data.features[vr]); print("val", time.time() - t, flush=True)
out = dict(val_rows=vr, train_rows=tr, val_p=vp, val_e=ve)
for k in range(2):
    p, e = run(data.images[tr], data.features[tr], aug_seed=k); print("view", k, time.time() - t, flush=True)
    out[f"tr_p{k}"], out[f"tr_e{k}"] = p, e
np.savez("runs/probe/arrays.npz", labels=data.labels, features=data.features, source=data.source, cells=data.cells, **out)
print("done", time.time() - t)
