"""The benchmark paths that need a GPU for their figures have a CPU path, run here on tiny settings."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_runs_on_the_cpu() -> None:
    """`make bench-gpu`'s script, on the CPU at 32 px with one timed step, prints its table without recording it
    (torch.compile is left out here: compiling DenseNet-121 on 2 cores takes minutes)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.train_step",
            "--resolutions",
            "32",
            "--steps",
            "1",
            "--workers",
            "0",
            "--images",
            "20",
            "--no-record",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 32 px")]
    assert len(rows) >= 2 and rows[0].split("|")[3].strip() == "fp32"
    assert all(float(row.split("|")[4].replace(",", "")) > 0 for row in rows)


def test_bench_gpu_refuses_without_a_gpu() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", "--require-gpu", "--no-record"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "no CUDA device" in result.stderr


def test_datasets_benchmark_times_synthetic_mimic(tmp_path: Path) -> None:
    """benchmarks/datasets.py on small synthetic MIMIC files (written under TMPDIR), printing without recording."""
    sizes = ["--mimic-images", "3000", "--mimic-studies", "1800", "--mimic-labelled", "1790", "--mimic-subjects", "500"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.datasets", "--only", "mimic", "--repeats", "2", *sizes, "--no-record"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| MIMIC")]
    assert len(rows) == 2 and "3,000 image rows, 1,790 label rows" in rows[0]
    assert all(0 < float(row.split("|")[2]) <= float(row.split("|")[3]) for row in rows)
    assert len(list(tmp_path.glob("cxrres-bench-mimic-*/*.csv.gz"))) == 3


def test_synthetic_mimic_files_have_the_asked_sizes_and_read_back(tmp_path: Path, monkeypatch) -> None:
    """The MIMIC files the benchmark writes, counted independently with csv, and what `open_dataset` makes of them."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.mimic_files import write_mimic_files
    from cxrres.data.datasets import DataOptions, mimic, open_dataset

    root = write_mimic_files(tmp_path / "m", n_images=2000, n_studies=1200, n_labelled=1195, n_subjects=300, seed=3)

    def rows(name: str) -> list[dict[str, str]]:
        with gzip.open(root / name, "rt", newline="") as handle:
            return list(csv.DictReader(handle))

    split, meta, labels = rows(mimic.SPLIT_FILE), rows(mimic.METADATA_FILE), rows(mimic.LABEL_FILES["chexpert"])
    assert (len(split), len(meta), len(labels)) == (2000, 2000, 1195)
    assert len({r["study_id"] for r in split}) == 1200 and len({r["subject_id"] for r in split}) == 300
    assert len({r["dicom_id"] for r in split}) == 2000 and all(len(r["dicom_id"]) == 44 for r in split)
    assert {r["study_id"] for r in labels} <= {r["study_id"] for r in split}
    part_of = {}
    for r in split:  # the official parts never split a subject
        assert part_of.setdefault(r["subject_id"], r["split"]) == r["split"]
    view = {r["dicom_id"]: r["ViewPosition"] for r in meta}
    frontal = [r for r in split if view[r["dicom_id"]] in ("PA", "AP")]
    table = open_dataset(root)
    assert len(table.frame) == len(frontal)
    expected = {mimic.PARTS[p]: sum(r["split"] == p for r in frontal) for p in ("train", "validate", "test")}
    assert table.frame["part"].value_counts().to_dict() == {p: n for p, n in expected.items() if n}
    assert len(open_dataset(root, options=DataOptions(views="all")).frame) == 2000
