"""Every hostile input of the corpus through the entry point that reads it: the ``analyze``
command (images, VOC files, model bundles, output folders) and the session loader.

What each must give (see corpus.py): one line naming the file and the problem, or a
documented repair with a warning, or the same answer as the clean file. Never a traceback,
a hang (each case has a time limit), a silently wrong answer or a partial set of exports."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from chromodesk import cli
from chromodesk.core.errors import InputError

from .corpus import CASES, SAMPLE, Hostile

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def shared_classifier(one_torch_thread):
    """The shipped classifier, loaded once for the module (the CLI would load it per command)."""
    from chromodesk.inference.classifier import Classifier

    return Classifier(None, device="cpu")


@pytest.fixture
def analyze_cli(shared_classifier, monkeypatch, capsys):
    """Run ``chromodesk analyze ... --json`` in this process; --model given: the real loader."""
    import chromodesk.inference.classifier as classifier_module

    real = classifier_module.Classifier

    def classifier(model=None, device="auto", **kw):
        return shared_classifier if model is None else real(model, device=device, **kw)

    monkeypatch.setattr(classifier_module, "Classifier", classifier)

    def run(*args: str) -> tuple[int, list[dict], list[str]]:
        capsys.readouterr()
        rc = cli.main(["analyze", *args, "--json", "--device", "cpu"])
        out, err = capsys.readouterr()
        results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return rc, results, [line for line in err.splitlines() if line.strip()]
    return run


@pytest.fixture(scope="module")
def reference(shared_classifier):
    from chromodesk.pipeline import analyze

    return [r.label for r in analyze(SAMPLE, classifier=shared_classifier).doc]


def check_error(h: Hostile, rc: int, results: list, err: list[str], named: Path) -> None:
    problems = [line for line in err if line.startswith("chromodesk:")]
    assert rc in (cli.EXIT_SOME_FAILED, cli.EXIT_USAGE), f"{h.id}: exit {rc}, expected a failure; stderr {err}"
    assert not results, f"{h.id}: an answer was printed for an unusable input: {results[0].get('count')} chromosomes"
    assert len(problems) == 1, f"{h.id}: expected one error line, got {err}"
    line = problems[0]
    assert str(named) in line or named.name in line, f"{h.id}: the error does not name {named}: {line!r}"
    assert h.says.lower() in line.lower(), f"{h.id}: the error should say {h.says!r}: {line!r}"
    assert "Traceback" not in "\n".join(err)


def check_answer(h: Hostile, rc: int, results: list, err: list[str], reference: list[str]) -> None:
    assert rc == cli.EXIT_OK and len(results) == 1, f"{h.id}: expected an analysis, got exit {rc}: {err}"
    warnings = [line for line in err if line.startswith("warning:")]
    if h.expect == "warn":
        assert any(h.says.lower() in w.lower() for w in warnings), f"{h.id}: no warning saying {h.says!r}: {warnings}"
    if h.expect == "same":
        labels = [c["label"] for c in results[0]["chromosomes"]]
        assert len(labels) == len(reference), f"{h.id}: {len(labels)} chromosomes, the clean file has {len(reference)}"
        agree = sum(a == b for a, b in zip(labels, reference)) / len(reference)
        assert agree >= 0.9, f"{h.id}: only {agree:.0%} of labels agree with the clean file's"


IMAGE_LIKE = [h for h in CASES if h.kind in ("image", "voc")]


@pytest.mark.parametrize("h", IMAGE_LIKE, ids=[h.id for h in IMAGE_LIKE])
def test_images_and_annotations(h: Hostile, tmp_path, analyze_cli, reference):
    path = h.build(tmp_path)
    if h.kind == "image":
        rc, results, err = analyze_cli(str(path))
    else:
        rc, results, err = analyze_cli(str(SAMPLE), "--annotations", str(path))
    if h.expect == "error":
        check_error(h, rc, results, err, path)
    else:
        check_answer(h, rc, results, err, reference)


BUNDLES = [h for h in CASES if h.kind in ("bundle", "detector")]


@pytest.mark.parametrize("h", BUNDLES, ids=[h.id for h in BUNDLES])
def test_model_bundles(h: Hostile, tmp_path, analyze_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a pickle that ran would leave PWNED here
    path = h.build(tmp_path)
    option = "--model" if h.kind == "bundle" else "--detector"
    rc, results, err = analyze_cli(str(SAMPLE), option, str(path))
    assert not (tmp_path / "PWNED").exists(), "a model file ran code"
    named = path if h.id.endswith("pickle-pt-given") else path.parent  # metadata or weights: a file of the bundle
    check_error(h, rc, results, err, named)


COMPANIONS = [h for h in CASES if h.kind in ("orientation", "segmenter")]


@pytest.mark.parametrize("h", COMPANIONS, ids=[h.id for h in COMPANIONS])
def test_companion_bundles(h: Hostile, tmp_path, monkeypatch):
    """Through the loaders the classifier uses for the networks it carries (Classifier(orientation=...,
    segmentation=...))."""
    from chromodesk.inference.orientation import find_orienter
    from chromodesk.inference.segmenter import find_segmenter

    find = {"orientation": find_orienter, "segmenter": find_segmenter}[h.kind]
    monkeypatch.chdir(tmp_path)  # a pickle that ran would leave PWNED here
    path = h.build(tmp_path)
    with pytest.raises(InputError) as info:
        find(path)
    assert not (tmp_path / "PWNED").exists(), "a model file ran code"
    message = str(info.value)
    assert "\n" not in message and str(path.parent) in message, message
    assert h.says.lower() in message.lower(), f"{h.id}: should say {h.says!r}: {message}"


SESSIONS = [h for h in CASES if h.kind == "session"]


@pytest.mark.parametrize("h", SESSIONS, ids=[h.id for h in SESSIONS])
def test_session_files(h: Hostile, tmp_path):
    from chromodesk.core.imaging import file_sha256
    from chromodesk.core.session import load_session

    path = h.build(tmp_path)
    if h.expect == "ok":
        doc = load_session(path, expected_sha256=file_sha256(SAMPLE))
        assert len(doc) > 40
        return
    with pytest.raises(InputError) as info:
        load_session(path, expected_sha256=file_sha256(SAMPLE))
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert h.says.lower() in message.lower(), f"{h.id}: should say {h.says!r}: {message}"


OUTPUTS = [h for h in CASES if h.kind == "output"]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


@pytest.mark.parametrize("h", OUTPUTS, ids=[h.id for h in OUTPUTS])
def test_output_targets_fail_whole_and_leave_nothing_behind(h: Hostile, tmp_path, analyze_cli, monkeypatch):
    target = h.build(tmp_path)
    if h.id == "output:disk-full":
        import chromodesk.core.atomic as atomic

        calls = {"n": 0}
        real_fsync = os.fsync

        def fsync(fd):  # the third file of the set finds the disk full
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(atomic.os, "fsync", fsync)
    before = _files(tmp_path)
    rc, results, err = analyze_cli(str(SAMPLE), "--out", str(target))
    assert rc in (cli.EXIT_SOME_FAILED, cli.EXIT_USAGE), f"{h.id}: exit {rc}: {err}"
    problems = [line for line in err if line.startswith("chromodesk:")]
    assert len(problems) == 1 and str(target) in problems[0], f"{h.id}: {err}"
    assert h.says.lower() in problems[0].lower(), f"{h.id}: should say {h.says!r}: {problems[0]}"
    assert _files(tmp_path) == before, f"{h.id}: a partial set of exports was left: {_files(tmp_path) - before}"


def test_the_corpus_is_large_and_covers_every_kind():
    kinds = {h.kind for h in CASES}
    assert kinds == {"image", "voc", "bundle", "detector", "orientation", "segmenter", "session", "output"}
    assert len({h.id for h in CASES}) == len(CASES) >= 200


def test_a_batch_analyses_every_good_image_whatever_the_bad_ones_do(tmp_path, analyze_cli, reference):
    """One command over bad images between good ones: every good one is analysed, each bad one
    gets its own line, and the exit code says some failed."""
    import shutil

    from .corpus import CASES

    bad = [h for h in CASES if h.kind == "image" and h.expect == "error"][::4]
    inputs, good = [], []
    for i, h in enumerate(bad):
        folder = tmp_path / f"bad{i}"
        folder.mkdir()
        inputs.append(str(h.build(folder)))
        copy = tmp_path / f"good{i}" / SAMPLE.name
        copy.parent.mkdir()
        shutil.copy(SAMPLE, copy)
        shutil.copy(SAMPLE.with_suffix(".xml"), copy.with_suffix(".xml"))
        inputs.append(str(copy))
        good.append(str(copy))
    rc, results, err = analyze_cli(*inputs)
    assert rc == cli.EXIT_SOME_FAILED
    assert [r["image"] for r in results] == good
    assert all([c["label"] for c in r["chromosomes"]] == reference for r in results)
    problems = [line for line in err if line.startswith("chromodesk:")]
    assert len(problems) == len(bad), err


def test_an_unknown_encoding_does_not_end_the_batch(tmp_path, analyze_cli):
    """The issue's first example: a VOC file declaring an unknown encoding used to end the run."""
    import shutil

    first = tmp_path / "a" / "cell.jpg"
    second = tmp_path / "b" / "cell.jpg"
    for p in (first, second):
        p.parent.mkdir()
        shutil.copy(SAMPLE, p)
    first.with_suffix(".xml").write_text('<?xml version="1.0" encoding="x-bogus-8"?><annotation></annotation>')
    shutil.copy(SAMPLE.with_suffix(".xml"), second.with_suffix(".xml"))
    rc, results, err = analyze_cli(str(first), str(second))
    assert rc == cli.EXIT_SOME_FAILED and [r["image"] for r in results] == [str(second)]
    assert err == [f"chromodesk: {first.with_suffix('.xml')}: declares an unknown character encoding 'x-bogus-8'"]
