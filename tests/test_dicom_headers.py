"""Patient ids from DICOM headers (VinDr-CXR's Kaggle layout has none in train.csv): the 99% rule on arrays, the
patient-wise carve from the files' PatientID (each patient in one part), the image-wise fallback without images, and the
per-process memory of headers already read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from cxrres.data import dicom_headers  # noqa: E402
from cxrres.data.datasets import DataOptions, open_dataset  # noqa: E402
from cxrres.data.dicom_headers import patients_from_headers, read_headers  # noqa: E402

from conftest import write_dicom  # noqa: E402
from test_vindr import write_fixture  # noqa: E402


def test_rule_on_arrays() -> None:
    images = [f"i{k}" for k in range(200)]
    ids = [f"P{k // 4}" for k in range(200)]
    patients, note = patients_from_headers(images, ids)
    assert list(patients) == ids and note == "patients from DICOM PatientID (200 of 200 images)"
    one_blank = ids[:-1] + [""]  # 199 of 200 = 99.5 % >= 99 %: the blank one is its own patient
    patients, note = patients_from_headers(images, one_blank)
    assert (
        patients[-1] == "i199"
        and list(patients[:-1]) == ids[:-1]
        and "1 without one are each their own patient" in note
    )
    three_blank = ids[:-3] + [""] * 3  # 197 of 200 = 98.5 %
    assert patients_from_headers(images, three_blank) == (
        None,
        "only 197 of 200 images have a DICOM PatientID (a patient-wise carve needs 99%)",
    )
    assert patients_from_headers(images, [""] * 200)[0] is None
    placeholder = ["ANON"] * 25 + ids[25:]  # 25 > max(20, 10 % of 200) images share one id
    assert patients_from_headers(images, placeholder) == (
        None,
        "DICOM PatientID 'ANON' is on 25 of 200 images (a placeholder, not a patient)",
    )


def _root(tmp_path: Path, n: int = 60, blank: int = 0) -> Path:
    """A VinBigData root of `n` images (No finding by one reader; image k Cardiomegaly when k is even), each a 4x6
    DICOM of patient P{k // 3}; the last `blank` have an empty PatientID."""
    rows = [f"x{k:03d},Cardiomegaly,3,R1,1,1,3,3" if k % 2 == 0 else f"x{k:03d},No finding,14,R1,,,," for k in range(n)]
    root = write_fixture(tmp_path / "v", rows)
    for k in range(n):
        write_dicom(
            root / "train" / f"x{k:03d}.dicom", np.zeros((4, 6), np.uint8), "" if k >= n - blank else f"P{k // 3}"
        )
    return root


def test_patient_wise_carve_keeps_each_patient_in_one_part(tmp_path: Path) -> None:
    root = _root(tmp_path)
    table = open_dataset(root)
    frame = table.frame
    assert frame.loc["x004.dicom", "patient_id"] == "P1" and frame["patient_id"].nunique() == 20
    assert frame.groupby("patient_id")["part"].nunique().max() == 1
    assert set(frame["part"]) == {"train", "val", "test"}
    assert (
        "train.csv has no patient ids; patients from DICOM PatientID (60 of 60 images): test and val carved "
        "patient-wise"
    ) in table.notes
    # the same root with two blank ids (58 of 60 < 99 %) is carved image-wise, and says why
    table = open_dataset(_root(tmp_path / "b", blank=2))
    assert (table.frame["patient_id"] == table.frame.index.str.removesuffix(".dicom")).all()
    assert any("only 58 of 60 images have a DICOM PatientID" in n and "image-wise" in n for n in table.notes)


def test_metadata_alone_is_carved_image_wise(tmp_path: Path, capsys) -> None:
    from cxrres.cli import main

    root = write_fixture(tmp_path / "v", [f"x{k},No finding,14,R1,,,," for k in range(12)])
    assert main(["describe", "--data", str(root)]) == 0
    assert (
        "train.csv has no patient ids; no train/ folder of DICOM files to read patient ids from: test and val "
        "carved image-wise (patient = image)"
    ) in capsys.readouterr().out


def test_headers_are_read_once_per_process_and_unreadable_files_are_unknown(tmp_path: Path, monkeypatch) -> None:
    paths = [write_dicom(tmp_path / f"{k}.dicom", np.zeros((3, 5), np.uint16), f"P{k}") for k in range(4)]
    (tmp_path / "bad.dicom").write_bytes(b"not a dicom")
    paths += [tmp_path / "bad.dicom", tmp_path / "absent.dicom"]
    index = [p.stem for p in paths]
    calls = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = read_headers(paths, index)
    assert first.loc["2"].tolist() == ["P2", 3, 5] and first.loc["bad"].tolist() == ["", 0, 0]
    assert first.loc["absent"].tolist() == ["", 0, 0] and len(calls) == 5
    assert read_headers(paths, index).equals(first) and len(calls) == 5  # remembered: no file opened again
    write_dicom(paths[0], np.zeros((7, 2), np.uint8), "Q")  # a rewritten file is read again
    assert read_headers(paths[:1], ["0"]).loc["0"].tolist() == ["Q", 7, 2] and len(calls) == 6
    assert dicom_headers.TAGS == ("PatientID", "Rows", "Columns")


def test_skip_bad_and_sizes_with_options(tmp_path: Path) -> None:
    root = _root(tmp_path, n=10)
    rows = (root / "train.csv").read_text() + "x001,Cardiomegaly,3,R2,0,0,7,4\n"  # 7 > the 6 columns of x001
    (root / "train.csv").write_text(rows)
    table = open_dataset(root, options=DataOptions(skip_bad=True))
    assert (
        table.skipped
        == (f"{root.resolve() / 'train.csv'}:12: box 0,0,7,4 is outside the 6 x 4 image (DICOM Columns x Rows)",)
        and "x001.dicom" not in table.frame.index
    )
