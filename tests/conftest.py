"""Shared fixtures: the committed 14-image sample and, when present, the real NIH material."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

# Under pytest-xdist (`make test`: two workers) each worker and the processes it starts get their share of the cores
# (set before torch is imported, so that its OpenMP pool and every subprocess's take it): two workers with two
# OpenMP threads each on two cores spin against each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

FIXTURES = Path(__file__).parent / "fixtures"
#: ../shared/data beside the repository: real metadata of the public data sets (absent in a user's clone).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINI = FIXTURES / "mini"


def real_data_root() -> Path | None:
    """CXRRES_DATA_ROOT, else ../shared/data/chestxray14 beside the repository, if it exists."""
    candidates = [os.environ.get("CXRRES_DATA_ROOT"), SHARED_DATA / "chestxray14"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Data_Entry_2017_v2020.csv").is_file():
            return Path(candidate)
    return None


#: The test files that take longest (a minute or more together in `make test`'s two-worker run, slowest first): they
#: are started first, so that pytest-xdist's workers (`-n 2 --dist loadfile`) end together instead of one waiting.
SLOW_FILES: tuple[str, ...] = (
    "test_docs_examples.py",
    "test_study.py",
    "test_train.py",
    "test_verify.py",
    "test_cluster.py",
    "test_datasets.py",
    "test_test_resolution.py",
    "test_real_pipeline.py",
    "test_signals.py",
    "test_cache.py",
    "test_hostile.py",
    "test_run_io.py",
    "test_benchmarks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow files first (in `SLOW_FILES` order), then the rest as collected; each file's tests keep their order."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def user_cache_dir(tmp_path_factory):
    """Default caches (keyed by data root under $CXRRES_CACHE_DIR) go to a temporary folder, never to ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CXRRES_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real ChestX-ray14 material; skips the test when it is absent (a user's fresh clone)."""
    root = real_data_root()
    if root is None:
        pytest.skip("real ChestX-ray14 material not found (set CXRRES_DATA_ROOT)")
    return root


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A writable copy of the committed sample data set (NIH flat layout)."""
    target = tmp_path / "mini"
    shutil.copytree(MINI, target)
    return target


def exact_area_resize(grey: np.ndarray, resolution_px: int) -> np.ndarray:
    """Independent reference for area interpolation: output pixel = overlap-weighted mean of the input pixels."""

    def weights(n: int) -> np.ndarray:
        step = n / resolution_px
        edges = np.arange(resolution_px + 1) * step
        lo, hi = edges[:-1, None], edges[1:, None]
        j = np.arange(n)[None, :]
        w = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
        return w / w.sum(axis=1, keepdims=True)

    return weights(grey.shape[0]) @ grey.astype(np.float64) @ weights(grey.shape[1]).T


#: The published CheXpert header: five info columns and the 14 observations.
CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)


def _chexpert_labels(patient: int) -> list[str]:
    """The 14 label cells of one patient's images: Cardiomegaly, Edema (uncertain for every 4th), Pleural Effusion
    set."""
    cells = [""] * 14
    cells[2] = "1.0" if patient % 3 == 0 else "0.0"  # Cardiomegaly
    cells[5] = "-1.0" if patient % 4 == 1 else ("1.0" if patient % 2 else "0.0")  # Edema
    cells[10] = "1.0" if patient % 2 == 0 else ""  # Pleural Effusion: blank = negative
    return cells


def write_chexpert_small(root: Path) -> Path:
    """A tiny CheXpert-v1.0-small at `root` (the folder holding train.csv and valid.csv), with real JPEGs (40x48 px).

    train: patients 1-16, study1 frontal each, a lateral for patients 1-8, a second frontal study for patients 1-4
    (so `view1_frontal.jpg` repeats): 20 frontal + 8 lateral; valid: patients 64541-64548 frontal, 2 lateral: 38 images.
    """
    from PIL import Image

    rows: dict[str, list[str]] = {"train": [], "valid": []}
    rng = np.random.default_rng(0)

    def add(folder: str, patient: int, study: int, view: str, side: str, ap_pa: str) -> None:
        path = f"{folder}/patient{patient:05d}/study{study}/{view}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), "L").save(root / path, quality=90)
        rows[folder].append(
            ",".join([f"CheXpert-v1.0-small/{path}", "Female", "60", side, ap_pa, *_chexpert_labels(patient)])
        )

    for p in range(1, 17):
        add("train", p, 1, "view1_frontal", "Frontal", "AP" if p % 2 else "PA")
        if p <= 8:
            add("train", p, 1, "view2_lateral", "Lateral", "")
        if p <= 4:
            add("train", p, 2, "view1_frontal", "Frontal", "AP")
    for p in range(64541, 64549):
        add("valid", p, 1, "view1_frontal", "Frontal", "PA")
        if p <= 64542:
            add("valid", p, 1, "view2_lateral", "Lateral", "")
    for folder in rows:
        (root / f"{folder}.csv").write_text("\n".join([CHEXPERT_HEADER, *rows[folder]]) + "\n")
    return root


def real_rsna_label_rows() -> list[dict[str, str]]:
    """The rows of the real RSNA stage-2 label file (.csv or Kaggle's .csv.zip), read with the csv module alone as an
    independent reference; skips the test when the file is absent."""
    from cxrres.data.rsna_labels import LABELS_FILE, find_file

    root = SHARED_DATA / "rsna-pneumonia"
    path = find_file(root, LABELS_FILE)
    if path is None:
        pytest.skip(f"{root}: no RSNA label file")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = archive.read(LABELS_FILE).decode()
    else:
        text = path.read_text()
    return list(csv.DictReader(io.StringIO(text)))


def write_dicom(path: Path, pixels: np.ndarray, patient_id: str | None = None) -> Path:
    """A minimal uncompressed single-frame grey DICOM (MONOCHROME2; `pixels` uint8, or uint16 read as 12-bit) at
    `path`, with PatientID when given; needs pydicom (tests using it importorskip it)."""
    from pydicom import uid
    from pydicom.dataset import FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.Rows, ds.Columns = pixels.shape
    bits = 8 if pixels.dtype == np.uint8 else 12
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8 if bits == 8 else 16, bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@contextmanager
def read_only_bind(folder: Path) -> Iterator[Path]:
    """`folder` remounted read-only on itself for the block (a bind mount, so that even root cannot write it); skips
    the test where it cannot be mounted (needs root)."""
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    mounted = (
        mounted and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode == 0
    )
    if not mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
