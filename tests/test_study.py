"""cxrres study and report on a tiny phantom: dry run, plan, the full pipeline, resume-by-skipping, the report
(self-contained HTML, looked at in headless chromium when it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrres.cli import main
from cxrres.study.grid import study_settings
from cxrres.synthetic import synthesize


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    synthesize(base / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    config = base / "study.yaml"
    config.write_text(
        "train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\n  lr_patience: 1\nlocalize:\n  examples: 1\n"
        "n_boot: 100\n"
    )
    args = [
        "study",
        "--data",
        str(base / "phantom"),
        "--resolutions",
        "32,48",
        "--out",
        str(base / "s"),
        "--config",
        str(config),
    ]
    return base, args


def test_dry_run_and_plan_before_anything(study, capsys):
    base, args = study
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"densenet121_32px_seed0\s+not started\s+left: train, evaluate, localize", out)
    assert "report: not written" in out
    assert main(args + ["--plan"]) == 0
    plan = capsys.readouterr().out.splitlines()
    trains = [line for line in plan if line.startswith("cxrres train")]
    assert len(trains) == 2 and "--resolution 48" in trains[1] and "--weights none" in trains[1]
    assert "--lr-patience 1" in trains[0]  # every setting is a flag
    assert plan[-1].startswith("cxrres study") and "--config" in plan[-1]


def test_full_study_then_nothing_left(study, capsys):
    base, args = study
    assert main(args + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert (
        "|  | DenseNet-121 32 px | DenseNet-121 48 px |" in out
        and "| mean AUC |" in out
        and f"report: {base / 's' / 'report.html'}" in out
    )
    s = base / "s"
    for name in (
        "report.html",
        "report.md",
        "comparison/compare.md",
        "report_files/training_curves.png",
        "runs/densenet121_48px_seed0/localization.csv",
        "runs/densenet121_32px_seed0/auc.csv",
    ):
        assert (s / name).is_file(), name
    html = (s / "report.html").read_text()
    assert (
        "<h2>Key results</h2>" in html
        and "<h2>Test AUC</h2>" in html
        and "<h2>Localization</h2>" in html
        and "Paired tests against" in html
    )
    assert not re.search(r"(src|href)=['\"](http|file|/)", html)  # self-contained: images are data URIs
    stamp = (s / "runs/densenet121_32px_seed0/checkpoints/best.ckpt").stat().st_mtime_ns
    assert main(args + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("left: nothing") == 2
    assert main(args + ["--quiet"]) == 0  # rerun: skips finished runs
    assert (s / "runs/densenet121_32px_seed0/checkpoints/best.ckpt").stat().st_mtime_ns == stamp
    assert main(["report", str(s)]) == 0


def test_two_seeds_report_shows_mean_sd_and_no_published_reference(study, capsys):
    base, args = study
    assert main(args + ["--seeds", "0,1", "--quiet"]) == 0  # the seed-0 runs of the full study are reused
    out = capsys.readouterr().out
    assert "|  | DenseNet-121 32 px (n = 2) | DenseNet-121 48 px (n = 2) |" in out and " ± " in out
    s = base / "s"
    html = (s / "report.html").read_text()
    for text in (
        "<h2>Best resolution per class</h2>",
        "(seed ensembles (mean of the seeds&#x27; probabilities))</h2>",
        "(seed 1 runs)</h2>",
        "<h2>Against the published study</h2>",
        "no published reference applies",
        "<th>DenseNet-121 48 px (n = 2)</th>",
        "band: range over seeds (min–max)",
    ):
        assert text in html, text
    assert re.search(r"<td>0\.\d{3} ± 0\.\d{3}</td>", html)
    seeds = pd.read_csv(s / "comparison" / "auc_seeds.csv")
    assert {"auc_seed0", "auc_seed1"} <= set(seeds.columns) and (seeds["n"] <= 2).all()
    best = pd.read_csv(s / "comparison" / "best_resolution.csv")
    assert set(best["scope"]) == {"seed 0", "seed 1", "seed ensemble"}
    shares = best.groupby(["scope", "class"])["share"].sum()
    assert np.allclose(shares.dropna(), 1.0)
    assert not (s / "comparison" / "published_comparison.csv").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt install chromium)")
def test_report_renders_in_headless_chromium(study, tmp_path):
    base, args = study
    html = base / "s" / "report.html"
    if not html.is_file():
        assert main(args + ["--quiet"]) == 0
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1200)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    assert (pixels < 128).mean() > 0.01


def test_export_best_run_per_resolution_in_one_command(study, tmp_path):
    base, args = study
    s = base / "s"
    if not (s / "report.html").is_file():
        assert main(args + ["--quiet"]) == 0
    assert "<h2>Use the networks</h2>" in (s / "report.html").read_text()
    assert main(["export", str(s), "--out", str(tmp_path / "exp")]) == 0
    exported = sorted(p.name for p in (tmp_path / "exp").glob("*.onnx"))
    assert [re.sub(r"seed\d+", "seed", name) for name in exported] == [
        "densenet121_32px_seed.onnx",
        "densenet121_48px_seed.onnx",
    ]
    assert all((tmp_path / "exp" / f"{name}.md").is_file() for name in exported)


@pytest.mark.parametrize(
    "section, message",
    [
        ("localize:\n  exampels: 1\n", "unknown localize setting 'exampels'"),
        ("localize:\n  method: gradkam\n", "unknown method 'gradkam'"),
        ("localize:\n  iou: 1.5\n", "iou must be a number in (0, 1]"),
        ("localize:\n  examples: -1\n", "examples must be a whole number"),
    ],
)
def test_a_bad_localize_section_is_refused_before_training(tmp_path, capsys, section, message):
    """Every key and value of a study file's `localize:` is checked at load: one line naming the file, nothing
    trained."""
    synthesize(tmp_path / "phantom", n_images=40, size_px=64, seed=3, workers=1, progress=False)
    config = tmp_path / "study.yaml"
    config.write_text("train:\n  weights: none\n  max_epochs: 1\n" + section)
    args = [
        "study",
        "--data",
        str(tmp_path / "phantom"),
        "--resolutions",
        "32",
        "--out",
        str(tmp_path / "s"),
        "--config",
        str(config),
        "--quiet",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(config) in err and message in err
    assert not (tmp_path / "s" / "runs").exists()


def test_localize_defaults_have_one_home():
    from cxrres.cli import build_parser
    from cxrres.localization.settings import LocalizeSettings
    from cxrres.study.grid import StudyConfig

    parsed = build_parser().parse_args(["localize", "RUN"])
    assert (parsed.method, parsed.threshold, parsed.iou, parsed.examples) == tuple(vars(LocalizeSettings()).values())
    assert StudyConfig(data="x").localize == vars(LocalizeSettings())


def test_plan_on_a_partial_root_warns_and_carries_the_study_train_flags(tmp_path, capsys):
    synthesize(tmp_path / "ph", n_images=40, size_px=64, seed=5, workers=1, progress=False)
    for path in sorted((tmp_path / "ph" / "images").glob("*.png"))[:3]:
        path.unlink()
    config = tmp_path / "study.yaml"
    config.write_text("train:\n  weights: imagenet\n  batch_size: 8\n")
    args = [
        "study",
        "--data",
        str(tmp_path / "ph"),
        "--resolutions",
        "32,48",
        "--out",
        str(tmp_path / "s"),
        "--config",
        str(config),
        "--plan",
    ]
    assert main(args) == 0
    plan = capsys.readouterr().out.splitlines()
    assert [line for line in plan if line.startswith("# warning: 3 of 40 listed images are missing on disk")]
    assert "--allow-missing" in plan[1] and not any(
        "--allow-missing" in line for line in plan if line.startswith("cxrres")
    )
    assert main(args + ["--allow-missing", "--weights", "none", "--max-epochs", "2"]) == 0
    plan = capsys.readouterr().out.splitlines()
    trains = [line for line in plan if line.startswith("cxrres train")]
    assert len(trains) == 2 and not [line for line in plan if "warning" in line]
    for line in trains:  # the flags override the file's `train:` and every run's command carries them
        assert (
            "--allow-missing" in line
            and "--weights none" in line
            and "--max-epochs 2" in line
            and "--batch-size 8" in line
        )
    written = study_settings(tmp_path / "s" / "study.yaml", {})  # what the plan's last command reads back
    assert written.train == {"weights": "none", "batch_size": 8, "allow_missing": True, "max_epochs": 2}
