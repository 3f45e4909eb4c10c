"""The cell-context stage learns what one chromosome alone cannot tell: which of two look-alikes
it is, given that the rest of the cell already holds two clear copies of one of them."""

from __future__ import annotations

import json

import numpy as np
import torch

from chromodesk.inference.cell_context import ContextConfig
from chromodesk.inference.classifier import Classifier
from training.cli import main
from training.context import ContextTrainConfig, app_penalties, fit_context, refine_cells
from training.data import cell_groups

N_CLASSES, N_FEATURES = 24, 5


def _cells(n_cells: int, rng: np.random.Generator):
    """Normal cells (two of each class). A fifth of the chromosomes are ambiguous for the crop
    network: half their probability on the true class, half on a random other class."""
    probs, labels, cells = [], [], []
    for c in range(n_cells):
        y = np.repeat(np.arange(N_CLASSES), 2)
        p = np.full((len(y), N_CLASSES), 0.02 / (N_CLASSES - 1))
        p[np.arange(len(y)), y] = 0.98
        for i in np.flatnonzero(rng.random(len(y)) < 0.2):
            other = (y[i] + rng.integers(1, N_CLASSES)) % N_CLASSES
            p[i] = 0.0
            p[i, y[i]], p[i, other] = (0.49, 0.51) if rng.random() < 0.5 else (0.51, 0.49)
        probs.append(p)
        labels.append(y)
        cells += [f"cell{c}"] * len(y)
    return np.concatenate(probs).astype(np.float32), np.concatenate(labels), np.array(cells)


def _fit_on_synthetic_cells(n_cells: int, n_val: int, seed: int, model: ContextConfig):
    """Fit one member on synthetic cells; (crop-network accuracy, stage accuracy, history) on the
    last ``n_val`` cells."""
    torch.manual_seed(0)
    rng = np.random.default_rng(seed)
    probs, labels, cells = _cells(n_cells, rng)
    features = rng.normal(0, 0.1, size=(len(labels), N_FEATURES)).astype(np.float32)
    groups = cell_groups(np.array(["synthetic"] * len(labels)), cells)
    train, val = groups[:-n_val], groups[-n_val:]
    cfg = ContextTrainConfig(epochs=20, batch_cells=8, lr=3e-3, model=model)
    context, history = fit_context([probs], features, labels, train, probs, val, cfg, log=lambda m: None)
    rows = np.concatenate(val)
    alone = (probs[rows].argmax(1) == labels[rows]).mean()
    together = (refine_cells(context, probs, features, val)[rows].argmax(1) == labels[rows]).mean()
    return alone, together, history


def test_context_stage_resolves_look_alikes_from_the_rest_of_the_cell():
    alone, together, history = _fit_on_synthetic_cells(300, 40, 0, ContextConfig(dim=48, layers=1, heads=4))
    assert alone < 0.92  # about a tenth of the chromosomes are wrong on their own
    assert together > alone + 0.05, (alone, together)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_context_stage_that_reads_the_assignment_follows_the_counts():
    # the same look-alikes: the cell's joint assignment (two of each) settles most of them,
    # and a stage that reads it learns to follow it
    model = ContextConfig(dim=48, layers=1, heads=4, assignment=app_penalties())
    alone, together, _ = _fit_on_synthetic_cells(120, 20, 1, model)
    assert alone < 0.93 and together > 0.95 and together > alone + 0.03, (alone, together)


def test_context_command_writes_a_bundle_the_app_loads(tiny_crops, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "--data", str(tiny_crops), "--out", str(run), "--epochs", "1", "--input-size", "32",
                 "--batch-size", "16", "--no-test-curve", "--quiet"]) == 0
    out = tmp_path / "with-context" / "model.json"
    assert main(["context", "--model", str(run / "model.json"), "--data", str(tiny_crops), "--out", str(out),
                 "--epochs", "2", "--aug-passes", "1", "--dim", "32", "--layers", "1", "--members", "2", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= printed["val_accuracy_with_context"] <= 1.0
    classifier = Classifier(out, device="cpu")
    assert classifier.has_context and "+ctx" in classifier.model_id
    # by default the stage reads the joint assignment, with the app's penalties, recorded in the bundle
    stage = json.loads(out.read_text())["context"]
    assert stage["assignment"] == list(app_penalties()) and stage["assignment_members"] == 1
    assert (out.parent / "model.split.json").read_text() == (run / "split.json").read_text()
    # evaluate reports the crop network alone beside the whole classifier
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--data", str(tiny_crops), "--json", str(report), "--quiet"]) == 0
    result = json.loads(report.read_text())
    assert result["cell_context"] is True and {"accuracy", "crop_accuracy"} <= result.keys()


def test_fit_with_context_then_fine_tuning_drops_the_stale_stage(tiny_crops, tmp_path):
    common = ["--data", str(tiny_crops), "--epochs", "1", "--input-size", "32", "--batch-size", "16",
              "--no-test-curve", "--quiet"]
    run, tuned = tmp_path / "run", tmp_path / "tuned"
    assert main(["fit", *common, "--out", str(run), "--context"]) == 0
    assert Classifier(run / "model.json", device="cpu").has_context  # what Tools > Train model gives the app
    no_assignment = tmp_path / "plain" / "model.json"
    assert main(["context", "--model", str(run / "model.json"), "--data", str(tiny_crops), "--out", str(no_assignment),
                 "--epochs", "1", "--aug-passes", "1", "--dim", "32", "--layers", "1", "--no-assignment", "--quiet"]) == 0
    assert json.loads(no_assignment.read_text())["context"]["assignment"] is None
    # a retrained crop network would not match the old stage: --init starts without it
    assert main(["fit", *common, "--out", str(tuned), "--init", str(run / "model.json")]) == 0
    assert not Classifier(tuned / "model.json", device="cpu").has_context


def test_context_with_a_companion_network(tiny_crops, tmp_path, capsys):
    """``context --companion``: a network trained on threshold crops joins one trained on outline
    crops; the stage is fitted on their average, and the bundle carries its companion along."""
    common = ["--data", str(tiny_crops), "--epochs", "1", "--input-size", "32", "--batch-size", "16",
              "--no-test-curve", "--quiet"]
    outline, plain = tmp_path / "outline", tmp_path / "plain"
    assert main(["fit", *common, "--out", str(outline), "--outlines"]) == 0
    assert main(["fit", *common, "--out", str(plain), "--seed", "1"]) == 0
    stage = ["--data", str(tiny_crops), "--epochs", "1", "--aug-passes", "1", "--dim", "32", "--layers", "1", "--quiet"]
    out = tmp_path / "pair" / "model.json"
    assert main(["context", "--model", str(outline / "model.json"), "--companion", str(plain / "model.json"),
                 "--out", str(out), *stage]) == 0
    meta = json.loads(out.read_text())
    assert meta["companion"]["bundle"] == "model-companion.json" and meta["preprocess"]["companion_crops"] is True
    assert (out.parent / "model-companion.safetensors").is_file()
    classifier = Classifier(out, device="cpu")
    assert classifier.companion is not None and classifier.has_context
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--data", str(tiny_crops), "--json", str(report), "--quiet"]) == 0
    assert 0.0 <= json.loads(report.read_text())["accuracy"] <= 1.0
    # refitted elsewhere, the new bundle takes its companion along
    again = tmp_path / "again" / "model.json"
    assert main(["context", "--model", str(out), "--out", str(again), *stage]) == 0
    assert Classifier(again, device="cpu").companion is not None
    # a network trained on outline crops cannot be the companion: one line, exit 2
    capsys.readouterr()
    assert main(["context", "--model", str(outline / "model.json"), "--companion", str(outline / "model.json"),
                 "--out", str(tmp_path / "bad" / "model.json"), *stage]) == 2
    err = capsys.readouterr().err.strip()
    assert "without the outline cut" in err and len(err.splitlines()) == 1
