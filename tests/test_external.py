"""Scoring across data sets: a run trained on an NIH-layout phantom (32 px, one epoch) scored on a tiny
CheXpert-v1.0-small (`cxrres evaluate RUN --data`), its refusals, and a study with `external:` through to the report."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from cxrres import runs
from cxrres.cli import main
from cxrres.synthetic import synthesize

from conftest import read_only_bind, write_chexpert_small

TRAIN = ["--resolution", "32", "--max-epochs", "1", "--weights", "none", "--batch-size", "8", "--quiet"]
#: NIH class -> CheXpert class: the findings the two data sets share (data/datasets/names.py).
SHARED = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> SimpleNamespace:
    """A study on an NIH-layout phantom (one run: 32 px, one epoch) with a tiny CheXpert-v1.0-small as its external
    root: what --dry-run and --plan printed before it ran, then the study done. Its run is also the run the tests
    score."""
    base = tmp_path_factory.mktemp("external")
    synthesize(base / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    chexpert = write_chexpert_small(base / "CheXpert-v1.0-small")
    config = base / "study.yaml"
    config.write_text(
        f"external: [{chexpert}]\ntrain:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\n"
        "localize:\n  examples: 1\nn_boot: 50\n"
    )
    args = [
        "study",
        "--data",
        str(base / "phantom"),
        "--resolutions",
        "32",
        "--out",
        str(base / "s"),
        "--config",
        str(config),
    ]
    before = {}
    for flag in ("--dry-run", "--plan"):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(args + [flag]) == 0
        before[flag] = out.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args + ["--quiet"]) == 0
    (run,) = (base / "s" / runs.STUDY_RUNS).iterdir()
    return SimpleNamespace(
        phantom=base / "phantom", chexpert=chexpert, args=args, out=base / "s", run=run, before=before
    )


def expected_test_labels(chexpert: Path) -> tuple[list[str], dict[str, list[int]]]:
    """valid.csv's frontal images and, per CheXpert class, 1 / 0 / -1 (uncertain, masked under `ignore`; blank = 0),
    read with the csv module alone."""
    with open(chexpert / "valid.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Frontal/Lateral"] == "Frontal"]
    images = [r["Path"].split("/", 1)[1] for r in rows]
    code = {"1.0": 1, "-1.0": -1, "0.0": 0, "": 0}
    return images, {name: [code[r[name]] for r in rows] for name in SHARED.values()}


def test_run_scored_on_chexpert_over_the_shared_classes(study, capsys) -> None:
    chexpert, run = study.chexpert, study.run
    shutil.rmtree(run / runs.EXTERNAL_TEST)  # the study scored it already: score it again by the command alone
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(chexpert), "--n-boot", "20", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["dataset"] == "chexpert" and payload["data_root"] == str(chexpert.resolve())
    assert payload["classes"] == SHARED
    out = runs.external_dir(run, "chexpert", chexpert)
    assert out.parent.name == runs.EXTERNAL_TEST and out.name.startswith("chexpert-")
    images, labels = expected_test_labels(chexpert)
    predictions = pd.read_csv(out / runs.PREDICTIONS)
    assert predictions["image"].tolist() == images and len(images) == 8
    # the other data set's patients travel with the predictions, and the mean's bootstrap resamples them
    assert predictions[runs.PATIENT_COLUMN].astype(str).tolist() == [
        p.split("/")[1][len("patient") :].lstrip("0") or "0" for p in images
    ]
    table = pd.read_csv(out / runs.AUC, keep_default_na=False)
    assert table.columns[:4].tolist() == [runs.EXTERNAL_DATASET, runs.EXTERNAL_ROOT, "class", runs.EXTERNAL_CLASS]
    assert (table[runs.EXTERNAL_DATASET] == "chexpert").all() and (
        table[runs.EXTERNAL_ROOT] == str(chexpert.resolve())
    ).all()
    assert table["class"].tolist() == [*SHARED, "mean"]
    assert table[runs.EXTERNAL_CLASS].tolist() == [*SHARED.values(), ""]
    defined = []
    for ours, theirs in SHARED.items():
        row = table.set_index("class").loc[ours]
        y = np.array(labels[theirs])
        assert predictions["label_" + ours].tolist() == y.tolist()  # the run's `ignore` policy: uncertain -> -1
        assert (int(row["n_pos"]), int(row["n_neg"])) == (int((y == 1).sum()), int((y == 0).sum()))
        kept = y != -1
        if 0 < y[kept].sum() < kept.sum():
            defined.append(ours)
            assert float(row["auc"]) == pytest.approx(roc_auc_score(y[kept], predictions[ours][kept]), abs=1e-5)
        else:
            assert row["note"].startswith("undefined")
    assert defined == ["Cardiomegaly", "Edema", "Effusion"]  # the fixture labels only these; Edema has 2 masked
    assert (table.set_index("class").loc["Edema", ["n_pos", "n_neg"]].astype(int).tolist()) == [2, 4]
    mean = table.set_index("class").loc["mean", "auc"]
    assert table.set_index("class").loc["mean", "note"].endswith("bootstrap replicates by patient")
    assert float(mean) == pytest.approx(payload["auc"]["mean"]["auc"], abs=1e-5)
    assert main(["evaluate", str(run), "--data", str(chexpert), "--n-boot", "20"]) == 0  # the text form
    text = capsys.readouterr().out
    assert (
        "chexpert at" in text
        and "7 shared classes" in text
        and re.search(r"^Effusion \(Pleural Effusion\)\s+4 pos", text, re.M)
    )
    assert f"wrote {out / runs.AUC}" in text


def test_refusals_are_one_line(study, tmp_path, capsys) -> None:
    phantom, chexpert, run = study.phantom, study.chexpert, study.run
    other = tmp_path / "tb"
    other.mkdir()
    (other / "labels.csv").write_text(
        "image,patient,split,Tuberculosis\n"
        + "".join(f"i{i}.png,p{i},{'test' if i < 3 else 'train'},{i % 2}\n" for i in range(12))
    )
    cases = [
        (["--data", str(other)], "no class in common between the run (nih: Atelectasis, Cardiomegaly"),
        (["--data", str(phantom)], "this is the run's own data root"),
        (["--data", str(chexpert), "--reference", "google2019"], "cannot be combined with --data"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["evaluate", str(run), *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(other.glob("**/*.npy"))  # refused before anything was cached


def test_missing_test_images_refused_or_left_out_when_allowed(study, tmp_path, capsys) -> None:
    root = tmp_path / "CheXpert-v1.0-small"
    shutil.copytree(study.chexpert, root)
    (root / "valid/patient64543/study1/view1_frontal.jpg").unlink()
    capsys.readouterr()
    assert main(["evaluate", str(study.run), "--data", str(root), "--n-boot", "20"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "1 of 8 test images are not in the cache (missing or unreadable; first: "
        "valid/patient64543/study1/view1_frontal.jpg); --allow-missing scores the others"
    )
    assert not (runs.external_dir(study.run, "chexpert", root) / runs.AUC).exists()
    assert main(["evaluate", str(study.run), "--data", str(root), "--n-boot", "20", "--allow-missing"]) == 0
    assert "7 shared classes; 1 test images not cached, left out" in capsys.readouterr().out
    scored = pd.read_csv(runs.external_dir(study.run, "chexpert", root) / runs.PREDICTIONS)
    assert len(scored) == 7 and "valid/patient64543/study1/view1_frontal.jpg" not in set(scored["image"])


def test_study_with_an_external_root_to_the_report(study, capsys) -> None:
    chexpert, args = study.chexpert, study.args
    assert re.search(
        r"densenet121_32px_seed0\s+not started\s+left: train, evaluate, localize, external 1/1",
        study.before["--dry-run"],
    )
    scoring = [line for line in study.before["--plan"].splitlines() if line.startswith("cxrres evaluate")]
    assert scoring == [f"cxrres evaluate {study.run} --data {chexpert.resolve()} --n-boot 50"]
    assert yaml.safe_load((study.out / runs.STUDY_FILE).read_text())["external"] == [str(chexpert.resolve())]
    assert (runs.external_dir(study.run, "chexpert", chexpert) / runs.AUC).is_file()
    capsys.readouterr()
    assert main(args + ["--dry-run"]) == 0  # the decision run_study makes too: nothing left to score
    assert capsys.readouterr().out.count("left: nothing") == 1
    assert main(args + ["--plan"]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("cxrres evaluate")]
    report = (study.out / runs.REPORT_MD).read_text()
    assert (
        "## Internal and external test AUC" in report
        and (study.out / runs.REPORT_FILES / "external_vs_resolution.png").is_file()
    )
    section = report.split("## Internal and external test AUC")[1].split("\n## ")[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| DenseNet-121")]
    own = pd.read_csv(study.run / runs.AUC).set_index("class")[
        "auc"
    ]  # the table's means, recomputed from the two files
    other = (
        pd.read_csv(runs.external_dir(study.run, "chexpert", chexpert) / runs.AUC)
        .set_index("class")["auc"]
        .drop("mean")
    )
    classes = [c for c in other.index if pd.notna(other[c]) and pd.notna(own[c])]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "chexpert (CheXpert-v1.0-small)" and cells[2] == f"{len(classes)}: {', '.join(classes)}"
    assert cells[3:5] == [f"{own[classes].mean():.3f}", f"{other[classes].mean():.3f}"]
    assert len(classes) >= 1


def test_external_setting_from_a_list_or_the_flag_round_trips(tmp_path) -> None:
    from cxrres.errors import CxrresError
    from cxrres.study.grid import make_study, study_settings, write_study_file

    study = make_study({"data": str(tmp_path), "out": str(tmp_path / "s"), "external": "a, ~/b"})
    assert study.external == (str(Path("a").resolve()), str(Path("~/b").expanduser().resolve()))
    assert study_settings(write_study_file(study), {}) == study
    assert make_study({"data": str(tmp_path), "external": ["a"]}).external == (str(Path("a").resolve()),)
    with pytest.raises(
        CxrresError, match=r"^external: give a list of data roots \(or --external ROOT,ROOT\), not \{'a': 1\}$"
    ):
        make_study({"data": str(tmp_path), "external": {"a": 1}})


def test_read_only_run_is_scored_and_printed_or_written_to_out(study, tmp_path, capsys) -> None:
    """`evaluate RUN --data ROOT` on a read-only run: the table is printed with one warning line and nothing is
    written; with --out the files go under OUT/external_test/<dataset>-<root hash>/ (as `evaluate` alone does)."""
    copy = tmp_path / "ro"
    shutil.copytree(study.run, copy, ignore=shutil.ignore_patterns(".lock", runs.EXTERNAL_TEST))
    with read_only_bind(copy):
        capsys.readouterr()
        assert main(["evaluate", str(copy), "--data", str(study.chexpert), "--n-boot", "20"]) == 0
        captured = capsys.readouterr()
        assert "mean" in captured.out and "wrote" not in captured.out
        warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and "cannot write here" in warning[0] and "--out DIR" in warning[0], captured.err
        assert not (copy / runs.EXTERNAL_TEST).exists()
        out = tmp_path / "tables"
        assert main(["evaluate", str(copy), "--data", str(study.chexpert), "--n-boot", "20", "--out", str(out)]) == 0
        written = runs.external_dir(out, "chexpert", study.chexpert) / runs.AUC
        assert f"wrote {written}" in capsys.readouterr().out
        assert pd.read_csv(written, keep_default_na=False)["class"].tolist() == [*SHARED, "mean"]
