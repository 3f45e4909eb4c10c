"""The training tool end to end on a tiny synthetic dataset (seconds, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.cli import main

FAST = ["--input-size", "32", "--batch-size", "16", "--quiet", "--threads", "1"]


def test_report_grid_runs_end_to_end_and_writes_table_and_curves(tiny_crops, tmp_path):
    out = tmp_path / "grid"
    rc = main(["grid", "--data", str(tiny_crops), "--out", str(out), "--epochs", "1", "--max-train", "48",
               "--optimizers", "adam", "sgd", "rmsprop", "--lrs", "1e-4", "1e-3", "1e-2", *FAST])
    assert rc == 0
    rows = json.loads((out / "grid.json").read_text())
    assert [(r["optimizer"], r["lr"]) for r in rows] == [(o, lr) for o in ("adam", "sgd", "rmsprop") for lr in (1e-4, 1e-3, 1e-2)]
    assert (out / "grid.md").read_text().count("\n") == 2 + 9
    for r in rows:
        assert (out / r["curves"]).stat().st_size > 1000  # a real PNG, not an empty file
        assert 0.0 <= r["val_acc"] <= 1.0
    # one split for every configuration, by case
    splits = {(out / r["config"] / "split.json").read_text() for r in rows}
    assert len(splits) == 1


def test_fit_learns_resumes_and_evaluate_reproduces_its_figures(tiny_crops, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["fit", "--data", str(tiny_crops), "--out", str(run), "--optimizer", "adam", "--lr", "3e-3", *FAST]
    assert main(args + ["--epochs", "2", "--schedule", "cosine"]) == 0
    first = json.loads((run / "history.json").read_text())
    assert len(first) == 2
    # resume continues from the checkpoint instead of starting over
    assert main(args + ["--epochs", "4", "--schedule", "cosine", "--resume"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[:2] == first
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 1.5 / 24  # better than chance on unseen cases
    split = json.loads((run / "split.json").read_text())
    parts = {}
    for key, part in split.items():
        parts.setdefault(part, set()).add(key)
    assert parts["train"].isdisjoint(parts["test"]) and parts["train"].isdisjoint(parts["val"])
    assert (run / "confusion.png").is_file() and (run / "model.safetensors").is_file()

    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(run / "model.json"), "--data", str(tiny_crops), "--json", str(out_json),
                 "--quiet"]) == 0
    result = json.loads(out_json.read_text())
    for key in ("n_chromosomes", "n_cells", "accuracy", "cell_accuracy", "per_class", "seconds",
                "assigned_accuracy", "assigned_cell_accuracy"):
        assert key in result
    assert result["n_chromosomes"] == metrics["test"]["n_chromosomes"]
    assert result["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)


def test_short_epochs_and_a_budget_that_ends_inside_an_epoch(tiny_crops, tmp_path):
    """Slow machines: --epoch-crops gives a validation point every N crops, and a time
    budget stops training mid-epoch (then evaluates and exports) instead of overrunning."""
    short = tmp_path / "short"
    assert main(["fit", "--data", str(tiny_crops), "--out", str(short), "--epochs", "3", "--epoch-crops", "32", *FAST]) == 0
    history = json.loads((short / "history.json").read_text())
    assert [h["crops"] for h in history] == [32, 32, 32]
    assert history[0]["train_seconds"] < history[1]["train_seconds"] < history[2]["train_seconds"]

    budget = tmp_path / "budget"
    assert main(["fit", "--data", str(tiny_crops), "--out", str(budget), "--epochs", "50", "--time-budget", "1e-6",
                 *FAST]) == 0
    history = json.loads((budget / "history.json").read_text())
    assert len(history) == 1 and history[0]["crops"] < 24 * 2 * 7  # stopped before one pass over the training cells
    assert (budget / "model.json").is_file()


def test_bad_data_folder_is_one_line_error(tmp_path, capsys):
    rc = main(["fit", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "nope" in err and "not found" in err


def test_two_process_gloo_training(tiny_crops, tmp_path):
    """torch.distributed through torchrun: two CPU processes on the gloo backend."""
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "training.cli", "fit", "--data", str(tiny_crops), "--out", str(run), "--epochs", "1",
           "--max-train", "64", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1
    assert (run / "model.json").is_file()


def test_fine_tuning_starts_from_the_given_bundle(tiny_crops, tmp_path, capsys):
    """--init: a lab retrains the shipped model on its own corrections instead of from scratch."""
    from safetensors.numpy import load_file

    base = tmp_path / "base"
    common = ["--data", str(tiny_crops), "--optimizer", "adam", "--epochs", "1", "--max-train", "64", *FAST]
    assert main(["fit", *common, "--out", str(base), "--lr", "3e-3"]) == 0
    # at a learning rate too small to move the weights, only the starting point decides
    tuned, scratch = tmp_path / "tuned", tmp_path / "scratch"
    assert main(["fit", *common, "--out", str(tuned), "--lr", "1e-9", "--init", str(base / "model.json")]) == 0
    assert main(["fit", *common, "--out", str(scratch), "--lr", "1e-9", "--seed", "1"]) == 0
    name = "backbone.conv1.weight"
    w_base, w_tuned, w_scratch = (load_file(str(run / "model.safetensors"))[name] for run in (base, tuned, scratch))
    assert abs(w_tuned - w_base).max() < 1e-5 < abs(w_scratch - w_base).max()

    # a bundle with a "not a chromosome" head (as shipped): the tuned crop network no longer matches the
    # embedding that head read, so the tuned bundle comes without it -- and loads
    from chromodesk.inference.bundle import load_bundle, read_meta, save_bundle
    from chromodesk.inference.network import RejectConfig, RejectHead

    model, meta = load_bundle(base / "model.json")
    model.reject_cfg = meta.reject = RejectConfig(hidden=8, threshold=0.5)
    model.reject = RejectHead(model.embedding_width + len(meta.feature_names), meta.reject)
    save_bundle(model, meta, tmp_path / "with_reject" / "model.json")
    assert read_meta(tmp_path / "with_reject" / "model.json").reject is not None
    again = tmp_path / "again"
    assert main(["fit", *common, "--out", str(again), "--lr", "1e-9", "--init", str(tmp_path / "with_reject" / "model.json")]) == 0
    tuned_model, tuned_meta = load_bundle(again / "model.json")
    assert tuned_meta.reject is None and tuned_model.reject is None

    # a ResNet pools globally: fine-tuned on larger crops (finer bands) it starts from the bundle's weights
    bigger = [a for a in common if a not in ("--input-size", "32")] + ["--input-size", "48"]
    assert main(["fit", *bigger, "--out", str(tmp_path / "big"), "--lr", "1e-9", "--init", str(base / "model.json")]) == 0
    assert read_meta(tmp_path / "big" / "model.json").input_size == 48
    assert abs(load_file(str(tmp_path / "big" / "model.safetensors"))[name] - w_base).max() < 1e-5

    capsys.readouterr()
    rc = main(["fit", *common, "--arch", "vgg16", "--out", str(tmp_path / "bad"), "--init", str(base / "model.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "model.json" in err and "resnet18" in err


def test_orientation_tool_trains_and_reports_on_held_out_cases(tiny_crops, tmp_path):
    """The p-arm orientation tool end to end on the tiny set: a run folder, a JSON report with
    the split by case and accuracies that are shares of right answers."""
    from training.orientation import main as orientation_main

    report = tmp_path / "orientation.json"
    assert orientation_main(["--data", str(tiny_crops), "--out", str(tmp_path / "run"), "--epochs", "2",
                             "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert set(result["cases"]) == {"train", "val", "test"} and result["crops"]["test"] > 0
    assert 0.0 <= result["test_accuracy"] <= 1.0 and len(result["test_accuracy_per_class"]) == 24
    assert (tmp_path / "run" / "best.pt").is_file()


def test_straightened_crops_are_made_from_the_cached_crops(tiny_crops, tmp_path, monkeypatch):
    """``--straighten`` needs no second pass over the images: its crops are ``straighten_crop`` of
    the crops cached without it, and cached in turn."""
    from chromodesk.core.preprocess import PreprocessConfig, straighten_crop
    from training import data

    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    plain = data.load_source(tiny_crops, PreprocessConfig(), workers=1)
    monkeypatch.setattr(data, "ProcessPoolExecutor", None)  # any new preprocessing would fail here
    straight = data.load_source(tiny_crops, PreprocessConfig(straighten=True), workers=1)
    assert np.array_equal(straight.images, np.stack([straighten_crop(c) for c in plain.images]))
    assert np.array_equal(straight.labels, plain.labels) and np.array_equal(straight.features, plain.features)
    assert len(list(tmp_path.glob("crops/*.npz"))) == 2


def test_one_part_of_the_split_alone_gives_that_part_of_the_whole(tiny_crops, tmp_path, monkeypatch):
    """``load_part`` preprocesses only the cases of one part (a quick look at validation with a
    new crop size): the same chromosomes, crops and labels as the whole source cut to that part,
    and nothing cached."""
    from chromodesk.core.preprocess import PreprocessConfig
    from training import data
    from training.evaluate import select

    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    whole = data.load_source(tiny_crops, PreprocessConfig(), workers=1)
    split = data.make_split(whole)
    cached = set(tmp_path.glob("crops/*.npz"))
    part = data.load_part([str(tiny_crops)], PreprocessConfig(), split, "val", workers=1)
    expected = select(whole, split, "val")
    assert 0 < len(part) < len(whole)
    for field in ("images", "features", "labels", "cells", "cases", "source"):
        assert np.array_equal(getattr(part, field), getattr(expected, field))
    assert set(tmp_path.glob("crops/*.npz")) == cached
    # a classifier with a companion: its crops come along, the same chromosomes (single pictures: the same crops)
    both = data.load_part([str(tiny_crops)], PreprocessConfig(companion_crops=True), split, "val", workers=1)
    assert np.array_equal(both.companion_images, part.images) and np.array_equal(both.labels, part.labels)
