"""Does averaging two crop networks help? runs/main2 (shipped) and runs/main3 (a third stage
fine-tuned from it) on the validation chromosomes, four flips each, and two flips each (the
same number of forward passes as one network). Needs runs/probe/arrays.npz
(``context_probe_extract.py``) for the validation rows. Measured: 93.91% main2, 93.83% main3,
93.91% both averaged, 93.84-93.85% two flips each: no gain, so one network ships.
"""
import json, time, numpy as np, torch
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import to_input
from training.data import load_data, split_index
torch.set_num_threads(2)
DATA = ["../shared/datasets/tseng2023-gband-metaphases", "../shared/datasets/gband-karyogram-chromosomes", "../shared/datasets/bioimlab-qband-chromosomes"]
A = np.load("runs/probe/arrays.npz", allow_pickle=True)
vr = A["val_rows"]; labels = A["labels"]
out = {}
for name in ["main2", "main3"]:
    clf = Classifier(f"runs/{name}/model.json", device="cpu")
    if name == "main2":
        data, _ = load_data(DATA, clf.preprocess, True)
    P = []
    with torch.inference_mode():
        for s in range(0, len(vr), 256):
            r = vr[s:s+256]
            x = to_input(torch.from_numpy(data.images[r])); f = torch.from_numpy(data.features[r])
            views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))])
            P.append(torch.softmax(clf.model(views, f.repeat(4, 1)), 1).view(4, len(r), -1).numpy())
    out[name] = np.concatenate(P, 1)
    print(name, "4flip", (out[name].mean(0).argmax(1) == labels[vr]).mean(), [(out[name][k].argmax(1) == labels[vr]).mean() for k in range(4)], flush=True)
np.savez("runs/probe/ens_val.npz", **out)
a, b = out["main2"], out["main3"]
acc = lambda p: float((p.argmax(1) == labels[vr]).mean())
print("ens 4+4", acc(a.mean(0) + b.mean(0)))
print("ens 2+2 (id,hflip / vflip,rot)", acc(a[[0, 1]].mean(0) + b[[2, 3]].mean(0)), acc(a[[0, 3]].mean(0) + b[[1, 2]].mean(0)))
print("main2 2flip", acc(a[[0, 1]].mean(0)), acc(a[[0, 3]].mean(0)))
