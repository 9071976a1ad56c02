"""The public Python API: `cxrres.open_dataset`, `cxrres.create_model`, `cxrres.load_run` — what README's Library
section and docs/api.md use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cxrres
from cxrres import runs
from cxrres.errors import CxrresError
from cxrres.synthetic import synthesize, synthesize_layout


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api") / "phantom"
    synthesize(root, n_images=60, size_px=64, seed=3, workers=1, progress=False)
    return root


def test_a_script_without_main_guard_opens_a_part_in_a_minute(phantom, tmp_path) -> None:
    """The README's kind of script, run as `python script.py` with no `if __name__ == "__main__":` guard: the cache is
    prepared on first use and a sample comes back; nothing hangs."""
    script = tmp_path / "lib.py"
    script.write_text(
        textwrap.dedent(f"""
        import cxrres
        train = cxrres.open_dataset({str(phantom)!r}, part="train", resolution=32, cache={str(tmp_path / "cache")!r})
        image, labels = train[0]
        print(len(train), tuple(image.shape), str(image.dtype), tuple(labels.shape), len(train.classes))
    """)
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:4] == ["(1,", "32,", "32)"] and "torch.uint8" in done.stdout
    assert done.stdout.strip().endswith("14")
    assert seconds <= 60


def test_open_dataset_parts_labels_and_masks(phantom, tmp_path) -> None:
    parts = {
        p: cxrres.open_dataset(phantom, part=p, resolution=32, cache=tmp_path / "c") for p in ("train", "val", "test")
    }
    names = set((phantom / "splits" / "chexnet" / "train_list.txt").read_text().split())
    assert set(parts["train"].images) <= names and len(parts["train"]) == len(names & set(parts["train"].images))
    assert sum(map(len, parts.values())) == 60 and parts["test"].classes == list(
        cxrres.open_dataset(phantom, part="test", resolution=32, cache=tmp_path / "c").classes
    )
    image, labels = parts["val"][0]
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32) and set(labels.tolist()) <= {0.0, 1.0}
    chexpert = tmp_path / "chexpert"
    synthesize_layout("chexpert", chexpert, n_images=60, size_px=64, seed=1, workers=1, progress=False)
    train = cxrres.open_dataset(chexpert, resolution=32, cache=tmp_path / "c2", uncertain="ignore")
    assert (train.labels == -1).any()  # uncertain labels are masked out, not read as positive or negative
    ones = cxrres.open_dataset(chexpert, resolution=32, cache=tmp_path / "c2", uncertain="ones")
    assert not (ones.labels == -1).any() and ones.images == train.images
    with pytest.raises(CxrresError, match="unknown data setting 'lr'"):
        cxrres.open_dataset(phantom, resolution=32, lr=0.1)
    with pytest.raises(CxrresError, match="unknown part 'validation'"):
        cxrres.open_dataset(phantom, part="validation", resolution=32)


def test_load_run_reproduces_the_runs_predictions_and_calls(phantom, tmp_path) -> None:
    from cxrres.deploy.predict import predict_files
    from cxrres.training.train import train
    from cxrres.config import TrainConfig

    run_dir = train(
        TrainConfig(
            data=str(phantom),
            resolution_px=32,
            weights="none",
            out=str(tmp_path / "run"),
            cache=str(tmp_path / "cache"),
            max_epochs=1,
            batch_size=8,
            progress=False,
        )
    )
    run = cxrres.load_run(run_dir)
    expected = runs.read_predictions(run_dir)
    files = [phantom / "images" / n for n in expected.images[:5]]
    table = run.predict(files)
    assert np.abs(table[run.classes].to_numpy() - expected.scores[:5]).max() <= 1e-4
    predict_files(run_dir, files, tmp_path / "p", workers=0, progress=False)
    cli = pd.read_csv(tmp_path / "p" / "predictions.csv")
    for name in run.classes:
        assert table["positive_" + name].dtype == "Int8"
        assert table["positive_" + name].fillna(-1).tolist() == cli["positive_" + name].fillna(-1).tolist()
    model = cxrres.create_model("densenet121", 14, "none")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in run.model.parameters())
    with pytest.raises(CxrresError, match="not a run directory"):
        cxrres.load_run(tmp_path)
