"""Experiment (validation cases only): does a crop network that reads larger crops (96 px instead
of 64, fine-tuned from the shipped outline network with ``fit --input-size 96 --init``) read the
bands of the large chromosomes better, and err on other chromosomes than the shipped pair (the
outline network and its threshold-crop companion)? Only the validation cases are preprocessed
(``training.data.load_part``), once per crop kind, kept in ``--cache``. Reports each network
alone and the averages, per source. Crop networks only: the cell stages come after.

    .venv/bin/python scripts/experiments/crop_network_resolution.py --other runs/r96/model.json [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from chromodesk.inference.classifier import Classifier
from crop_network_pair import score_variants  # beside this script
from training.data import CropSet, load_data, load_part
from training.evaluate import bundle_split, select

ROOT = Path(__file__).resolve().parents[2]
DATA = [str(ROOT.parent / "shared" / "datasets" / n) for n in
        ("tseng2023-gband-metaphases", "gband-karyogram-chromosomes", "bioimlab-qband-chromosomes")]


def val_crops(clf: Classifier, split: dict, cache: Path, whole: bool = False) -> CropSet:
    """The validation crops ``clf`` reads (with its companion's), from ``cache`` when made before."""
    path = cache / f"val-{clf.preprocess.digest()}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        data = CropSet(*(z[f] for f in CropSet.FIELDS))
        if "companion_images" in z:
            data.companion_images, data.companion_features = z["companion_images"], z["companion_features"]
        return data
    if whole:  # the sources' whole crop caches are there (a training run made them): cut them
        data = select(load_data(DATA, clf.preprocess, quiet=True)[0], split, "val")
    else:
        data = load_part(DATA, clf.preprocess, split, "val")
    cache.mkdir(parents=True, exist_ok=True)
    extra = {} if data.companion_images is None else {"companion_images": data.companion_images,
                                                       "companion_features": data.companion_features}
    np.savez(path, **{f: getattr(data, f) for f in CropSet.FIELDS}, **extra)
    return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", nargs="*", default=[], help="crop-network bundles at other input sizes")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "val-crops"))
    ap.add_argument("--whole-caches", action="store_true",
                    help="the other bundles' crops from the sources' whole crop caches ($CHROMODESK_CACHE), cut to validation")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    base_path = ROOT / "models" / "chromodesk-resnet18.json"
    split = bundle_split(base_path)
    base = Classifier(base_path, device="cpu")
    data = val_crops(base, split, Path(args.cache))
    labels, source = data.labels, data.source
    probs = {"pair (shipped)": base.predict_arrays(data.images, data.features, companion=data.companion)}
    companion, base.companion = base.companion, None  # each of the pair alone
    probs["outline 64"] = base.predict_arrays(data.images, data.features)
    base.model, base.companion = companion, None
    probs["threshold 64"] = base.predict_arrays(*data.companion)
    for o in args.other:
        clf = Classifier(o, device="cpu")
        other = val_crops(clf, split, Path(args.cache), args.whole_caches)
        if not (np.array_equal(other.labels, labels) and np.array_equal(other.cells, data.cells)):
            raise SystemExit(f"{o}: its crops do not list the same chromosomes in the same order")
        probs[f"{Path(o).parent.name} {clf.preprocess.size}"] = clf.predict_arrays(other.images, other.features)
    variants = dict(probs)
    singles = [n for n in probs if n != "pair (shipped)"]
    for k in range(2, len(singles) + 1):
        for combo in itertools.combinations(singles, k):
            variants["mean " + " + ".join(combo)] = sum(probs[n] for n in combo) / k
    for o in [n for n in singles if n not in ("outline 64", "threshold 64")]:
        variants[f"mean pair (as one) + {o}"] = (probs["pair (shipped)"] + probs[o]) / 2
    score_variants(variants, labels, source, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
