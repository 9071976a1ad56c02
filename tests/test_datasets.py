"""Data-set adapters: detection, the common form, exact counts on small fixtures in each published layout and on
the real CheXpert and PadChest metadata of ../shared (skipped when absent), views, splits and bad input."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from cxrres.data import DataRoot, build_split
from cxrres.data.datasets import ADAPTERS, DataOptions, apply_uncertain, detect_dataset, open_dataset
from cxrres.data.datasets import chexpert, padchest
from cxrres.errors import CxrresError, DataFormatError, SplitError

from conftest import SHARED_DATA, write_chexpert_small

SHARED = SHARED_DATA
CHEXPERT_REAL = SHARED / "chexpert" / "train.csv.gz"
PADCHEST_REAL = SHARED / "padchest" / padchest.FILE_NAMES[1]
HEAD = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(chexpert.CLASSES)


def chexpert_row(patient: int, study: int, view: str, labels: dict[str, str], folder: str = "train") -> str:
    """One CheXpert CSV row (labels by class name, the rest blank)."""
    side, ap = ("Lateral", "") if view == "lateral" else ("Frontal", view)
    cells = [labels.get(c, "") for c in chexpert.CLASSES]
    name = "view2_lateral" if view == "lateral" else "view1_frontal"
    return (
        f"CheXpert-v1.0-small/{folder}/patient{patient:05d}/study{study}/{name}.jpg,Female,60,{side},{ap},"
        + ",".join(cells)
    )


def write_chexpert(root: Path, n_patients: int = 20, valid: bool = True) -> Path:
    """A CheXpert-v1.0-small root: per patient one frontal (AP or PA) and one lateral image; 4 validation patients."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(1, n_patients + 1):
        rows.append(
            chexpert_row(
                p,
                1,
                "AP" if p % 2 else "PA",
                {
                    "Edema": "1.0" if p % 3 == 0 else "-1.0" if p % 3 == 1 else "",
                    "Pleural Effusion": "0.0" if p % 2 else "1.0",
                },
            )
        )
        rows.append(chexpert_row(p, 1, "lateral", {"Edema": "1.0"}))
    (root / "train.csv").write_text(HEAD + "\n" + "\n".join(rows) + "\n")
    if valid:
        rows = [chexpert_row(64540 + p, 1, "AP", {"Edema": "1.0" if p == 1 else "0.0"}, "valid") for p in range(1, 5)]
        (root / "valid.csv").write_text(HEAD + "\n" + "\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize(
    "policy, train_val, test",
    [
        # Edema over train+val (train.csv, frontal): 6 positive, 7 uncertain, 7 blank;
        # test (valid.csv): 1 positive, 3 negative
        ("ignore", (6, 7, 7), (1, 3, 0)),
        ("zeros", (6, 14, 0), (1, 3, 0)),
        ("ones", (13, 7, 0), (1, 3, 0)),
    ],
)
def test_describe_counts_what_a_run_trains_on_under_each_uncertain_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture, policy: str, train_val: tuple, test: tuple
) -> None:
    import json
    import re

    from cxrres.cli import main

    root = write_chexpert(tmp_path / "cx")
    assert main(["describe", "--data", str(root), "--uncertain", policy, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uncertain_policy"] == policy
    edema = summary["classes"]["Edema"]
    assert (edema["negative"]["test"], sum(edema["negative"].values())) == (3, 3)
    trained = edema["trained"]
    kinds = ("positive", "negative", "masked")
    assert tuple(trained[k]["train"] + trained[k]["val"] for k in kinds) == train_val
    assert tuple(trained[k]["test"] for k in kinds) == test
    for part in ("train", "val", "test"):  # every image counts once: positive, negative or masked
        assert sum(trained[k][part] for k in kinds) == summary["images"][part]
    assert main(["describe", "--data", str(root), "--uncertain", policy]) == 0
    text = capsys.readouterr().out
    assert f"what a run trains and is scored on (--uncertain {policy};" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("Edema ")]
    raw = [int(v.replace(",", "")) for v in rows[0][1:] if not v.endswith("%")]
    assert raw == [
        edema[k][p] for p in ("train", "val", "test") for k in ("positive", "negative", "uncertain", "blank")
    ]
    assert [int(v) for v in rows[1][1:]] == [trained[k][p] for p in ("train", "val", "test") for k in kinds]
    assert re.search(r"^class +train +% +neg +unc +blank", text, re.MULTILINE)


def test_views_take_the_data_sets_own_word_and_refuse_an_unknown_code(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from cxrres.cli import main

    root = write_chexpert(tmp_path / "cx")
    assert main(["describe", "--data", str(root), "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["describe", "--data", str(root), "--views", "Frontal", "--json"]) == 0  # CheXpert's column value
    assert json.loads(capsys.readouterr().out)["images"] == default["images"] == {"train": 18, "val": 2, "test": 4}
    assert len(open_dataset(root, options=DataOptions(views="ALL")).frame) == 44
    everything = open_dataset(root, options=DataOptions(views="all")).frame
    codes = everything["view"].value_counts()
    assert main(["describe", "--data", str(root), "--views", "PA,Frontl"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--views PA,Frontl: no image of this data set has the view 'Frontl'" in err
    assert all(f"{code} {n:,}" in err for code, n in codes.items()) and "or frontal (any case), all" in err
    assert main(["describe", "--data", str(root), "--views", "PA", "--json"]) == 0
    assert sum(json.loads(capsys.readouterr().out)["images"].values()) == int(codes["PA"])


def test_a_root_one_or_two_folders_too_high_points_at_the_data_set(
    tmp_path: Path, mini: Path, capsys: pytest.CaptureFixture
) -> None:
    from cxrres.cli import main

    write_chexpert_small(tmp_path / "up" / "CheXpert-v1.0-small")
    assert main(["describe", "--data", str(tmp_path / "up")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"cxrres describe: error: {tmp_path / 'up'}: no data set here, but found CheXpert-v1.0-small/train.csv "
        f"below it (chexpert): use --data {tmp_path / 'up' / 'CheXpert-v1.0-small'}\n"
    )
    (tmp_path / "two" / "downloads").mkdir(parents=True)
    mini.rename(tmp_path / "two" / "downloads" / "nih")  # two levels down; an empty folder beside it is passed over
    (tmp_path / "two" / "aaa-empty").mkdir()
    with pytest.raises(CxrresError) as info:
        detect_dataset(tmp_path / "two")
    assert str(info.value) == (
        f"{tmp_path / 'two'}: no data set here, but found downloads/nih/Data_Entry_2017.csv below "
        f"it (nih): use --data {tmp_path / 'two' / 'downloads' / 'nih'}"
    )


def test_a_file_given_as_data_is_named_a_file_and_its_folder_suggested(
    tmp_path: Path, mini: Path, capsys: pytest.CaptureFixture
) -> None:
    from cxrres.cli import main

    entry = mini / "Data_Entry_2017.csv"
    for argv in (
        ["describe", "--data", str(entry)],
        ["describe", "--data", str(entry), "--dataset", "nih"],
        ["prepare", "--data", str(entry), "--resolutions", "8"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{entry}: is a file, not a data directory; its folder holds a data set (nih): use --data {mini}" in err
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CxrresError, match=r"notes.txt: is a file, not a data directory$"):
        DataRoot.at(tmp_path / "notes.txt")


def test_registry_detects_each_layout_and_names_what_it_expects(tmp_path: Path, mini: Path) -> None:
    assert set(ADAPTERS) == {"nih", "chexpert", "mimic", "padchest", "rsna", "vindr", "csv"}
    assert detect_dataset(write_chexpert(tmp_path / "cx")) == "chexpert"
    assert detect_dataset(mini) == "nih"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "labels.csv").write_text("image,A\na.png,1\n")
    assert detect_dataset(tmp_path / "plain") == "csv"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CxrresError) as info:
        detect_dataset(tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message and all(f"{name}:" in message for name in ADAPTERS) and "--dataset" in message
    with pytest.raises(CxrresError, match="unknown data set 'nope'"):
        open_dataset(mini, "nope")


@pytest.mark.parametrize("kind", ["chexnet", "official"])
def test_nih_adapter_is_build_split_unchanged(request: pytest.FixtureRequest, kind: str) -> None:
    root = request.getfixturevalue(
        "real_root" if kind == "chexnet" else "mini"
    )  # the bundled CheXNet lists need real names
    table = open_dataset(root, options=DataOptions(split=kind))
    split = build_split(DataRoot.at(root), kind)
    assert table.dataset == "nih" and table.frame.index.equals(split.frame.index)
    assert (table.frame["part"] == split.frame["part"]).all()
    assert (table.frame["patient_id"].to_numpy() == split.frame["patient_id"].to_numpy()).all()
    assert np.array_equal(
        table.frame[list(table.classes)].to_numpy(np.uint8), split.frame[list(table.classes)].to_numpy(np.uint8)
    )
    assert table.frame["path"].iloc[0].startswith("images/") and table.frame["frontal"].all()
    assert len(table.boxes) == len(DataRoot.at(root).boxes)


def test_chexpert_fixture_counts_views_and_split(tmp_path: Path) -> None:
    root = write_chexpert(tmp_path / "CheXpert-v1.0-small")
    table = open_dataset(root)
    assert table.dataset == "chexpert" and table.classes == chexpert.CLASSES
    frame = table.frame
    assert len(frame) == 24 and frame["frontal"].all()  # 20 frontal train + 4 valid; laterals dropped
    assert frame.index[0] == "train/patient00001/study1/view1_frontal.jpg" == frame["path"].iloc[0]
    assert (frame["part"] == "test").sum() == 4 and set(frame.loc[frame["part"] == "test", "patient_id"]) == {
        64541,
        64542,
        64543,
        64544,
    }
    assert (frame["part"] == "val").sum() == 2 and (
        frame["part"] == "train"
    ).sum() == 18  # >= 10% of 20, whole patients
    edema = frame["Edema"]
    assert ((edema == 1).sum(), (edema == -1).sum(), edema.isna().sum(), (edema == 0).sum()) == (6 + 1, 7, 7, 3)
    assert set(frame["view"]) == {"AP", "PA"}
    everything = open_dataset(root, options=DataOptions(views="all"))
    assert len(everything.frame) == 44 and (everything.frame["view"] == "Lateral").sum() == 20
    pa = open_dataset(root, options=DataOptions(views="PA"))
    assert len(pa.frame) == 10 and set(pa.frame["view"]) == {"PA"}
    again = open_dataset(root)
    assert again.frame.equals(frame)  # the carve is deterministic
    other = open_dataset(root, options=DataOptions(split_seed=1))
    assert not other.frame["part"].equals(frame["part"])


def test_chexpert_without_valid_carves_test_too(tmp_path: Path) -> None:
    table = open_dataset(write_chexpert(tmp_path / "cx", n_patients=50, valid=False))
    parts = table.frame["part"].value_counts().to_dict()
    assert parts == {"train": 36, "val": 4, "test": 10} and any("test: 0.2" in n for n in table.notes)


@pytest.mark.parametrize(
    "mutate, where, message",
    [
        (lambda t: t.replace("Pleural Effusion", "Effusion"), ":", "missing column 'Pleural Effusion'"),
        (lambda t: t.replace(",-1.0,", ",2.0,", 1), ":2:", "column 'Edema': label '2.0' is not 1, 0, -1 or blank"),
        (lambda t: t.replace("patient00003", "pat3", 1), ":6:", "column 'Path'"),
        (lambda t: t.replace(",Lateral,", ",Side,", 1), ":3:", "column 'Frontal/Lateral'"),
    ],
)
def test_chexpert_bad_input_names_file_and_line(tmp_path: Path, mutate, where: str, message: str) -> None:
    root = write_chexpert(tmp_path / "cx")
    (root / "train.csv").write_text(mutate((root / "train.csv").read_text()))
    with pytest.raises(DataFormatError) as info:
        open_dataset(root, "chexpert")
    text = str(info.value)
    assert text.startswith(f"{root / 'train.csv'}{where}") and message in text and "\n" not in text


@pytest.mark.skipif(not CHEXPERT_REAL.is_file(), reason="../shared CheXpert train.csv absent")
def test_chexpert_real_train_csv_exact_counts() -> None:
    with gzip.open(CHEXPERT_REAL, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names, columns, labels = chexpert.read_csv(CHEXPERT_REAL, "train")
    assert len(names) == len(rows) == 223_414 and len(set(names)) == len(names)
    assert int(columns["frontal"].sum()) == sum(r["Frontal/Lateral"] == "Frontal" for r in rows) == 191_027
    assert len(set(columns["patient_id"].tolist())) == len({r["Path"].split("/")[2] for r in rows}) == 64_540
    for j, name in enumerate(chexpert.CLASSES):
        for code, value in (("1.0", 1.0), ("0.0", 0.0), ("-1.0", -1.0)):
            assert int((labels[:, j] == value).sum()) == sum(r[name] == code for r in rows), (name, code)
        assert int(np.isnan(labels[:, j]).sum()) == sum(r[name] == "" for r in rows)
    table = open_dataset(CHEXPERT_REAL.parent)  # no valid.csv in ../shared: test carved too, frontal only
    assert len(table.frame) == 191_027 and set(table.frame["part"]) == {"train", "val", "test"}


def write_csv_root(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text(text)
    return root


def test_plain_csv_with_split_and_patients(tmp_path: Path) -> None:
    lines = ["image,patient,split,Opacity,Nodule"]
    lines += [
        f"img/{i}.png,p{i // 2},{'test' if i >= 16 else 'val' if i >= 12 else 'train'},{i % 2},{'-1' if i == 3 else ''}"
        for i in range(20)
    ]
    table = open_dataset(write_csv_root(tmp_path / "plain", "\n".join(lines) + "\n"))
    assert table.classes == ("Opacity", "Nodule") and table.notes == ()
    assert table.frame["part"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}
    assert int((table.frame["Opacity"] == 1).sum()) == 10 and int((table.frame["Nodule"] == -1).sum()) == 1
    assert int(table.frame["Nodule"].isna().sum()) == 19


def test_plain_csv_without_split_carves_and_catches_leakage(tmp_path: Path) -> None:
    lines = ["image,Opacity"] + [f"{i}.png,{i % 2}" for i in range(50)]
    table = open_dataset(write_csv_root(tmp_path / "a", "\n".join(lines) + "\n"))
    assert table.frame["part"].value_counts().to_dict() == {"train": 36, "test": 10, "val": 4}
    leaky = "image,patient,split,A\na.png,1,train,1\nb.png,1,test,0\nc.png,2,val,0\n"
    with pytest.raises(SplitError, match="patient leakage"):
        open_dataset(write_csv_root(tmp_path / "b", leaky))
    with pytest.raises(DataFormatError, match=r"labels.csv:3: column 'A': label 'yes'"):
        open_dataset(write_csv_root(tmp_path / "c", "image,A\na.png,1\nb.png,yes\n"))
    with pytest.raises(DataFormatError, match=r"labels.csv:3: duplicate image 'a.png'"):
        open_dataset(write_csv_root(tmp_path / "d", "image,A\na.png,1\na.png,0\n"))


def test_uncertain_policies() -> None:
    raw = np.array([[1, 0, -1, np.nan], [-1, -1, 1, 0]], np.float32)
    targets, mask = apply_uncertain(raw, "ignore")
    assert targets.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]] and mask.tolist() == [
        [True, True, False, True],
        [False, False, True, True],
    ]
    targets, mask = apply_uncertain(raw, "zeros")
    assert targets.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]] and mask.all()
    targets, mask = apply_uncertain(raw, "ones")
    assert targets.tolist() == [[1, 0, 1, 0], [1, 1, 1, 0]] and mask.all() and targets.dtype == np.float32
    with pytest.raises(CxrresError, match="unknown uncertain-label policy 'maybe'"):
        apply_uncertain(raw, "maybe")


def write_padchest(root: Path, index_column: bool) -> Path:
    """A PadChest root: 6 patients x (PA, L) images, list-string labels (items with spaces), one unlabelled row."""
    root.mkdir(parents=True, exist_ok=True)
    labels = [
        "['normal']",
        "['pleural effusion', ' cardiomegaly']",
        "['loculated pleural effusion']",
        "['nodule', 'pseudonodule']",
        "['hydropneumothorax']",
        "nan",
    ]
    rows = [["ImageID", "ImageDir", "PatientID", "Projection", "Labels", "Report"]]
    for p in range(6):
        rows.append([f"{p}_pa.png", str(p % 3), f"pat{p}", "PA", labels[p], "texto , con comas"])
        rows.append([f"{p}_l.png", str(p % 3), f"pat{p}", "L", labels[p], ""])
    if index_column:
        rows = [[""] + rows[0]] + [[str(i)] + row for i, row in enumerate(rows[1:])]
    with open(root / padchest.FILE_NAMES[0], "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


@pytest.mark.parametrize("index_column", [False, True])
def test_padchest_fixture_maps_terms_to_nih_names(tmp_path: Path, index_column: bool) -> None:
    table = open_dataset(
        write_padchest(tmp_path / "pc", index_column), options=DataOptions(test_fraction=0.2, val_fraction=0.25)
    )
    frame = table.frame
    assert table.dataset == "padchest" and len(frame) == 5 and set(frame["view"]) == {"PA"}  # unlabelled + laterals out
    assert frame["Effusion"].sum() == 2 and frame["Cardiomegaly"].sum() == 1 and frame["Nodule"].sum() == 1
    assert frame["Pneumothorax"].sum() == 1 and frame.loc["0_pa.png", list(table.classes)].sum() == 0
    assert frame.loc["1_pa.png", "path"] == "1/1_pa.png" and table.notes[0] == "2 unlabelled rows left out"
    terms = padchest.read(tmp_path / "pc", DataOptions(views="all"), classes=("pseudonodule", "normal"))
    assert terms.classes == ("pseudonodule", "normal") and len(terms.frame) == 10
    assert terms.frame["pseudonodule"].sum() == 2 and terms.frame["normal"].sum() == 2


@pytest.mark.skipif(not PADCHEST_REAL.is_file(), reason="../shared PadChest CSV absent")
def test_padchest_real_csv_exact_counts() -> None:
    import ast

    with gzip.open(PADCHEST_REAL, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labelled = [r for r in rows if r["Labels"] not in ("", "nan")]
    frontal = [r for r in labelled if r["Projection"] in ("PA", "AP", "AP_horizontal")]
    assert len(rows) == 160_861 and len(labelled) == 160_861 - 103
    table = open_dataset(PADCHEST_REAL.parent, options=DataOptions(views="all"))
    assert len(table.frame) == len(labelled) and table.frame["patient_id"].nunique() == len(
        {r["PatientID"] for r in labelled}
    )
    assert table.frame["view"].value_counts().to_dict() == {
        k: sum(r["Projection"] == k for r in labelled) for k in set(r["Projection"] for r in labelled)
    }
    listed = [{t.strip() for t in ast.literal_eval(r["Labels"])} for r in labelled]  # each row's terms, parsed once
    for name, terms in padchest.NIH_TERMS.items():
        expected = sum(bool(row_terms & set(terms)) for row_terms in listed)
        assert int(table.frame[name].sum()) == expected, name
    assert len(open_dataset(PADCHEST_REAL.parent).frame) == len(frontal)
    # --classes with PadChest's own terms beside an NIH name: the same images and parts, each term counted by itself
    terms = open_dataset(
        PADCHEST_REAL.parent, options=DataOptions(views="all", classes=("normal", "Effusion", "pseudonodule"))
    )
    assert terms.frame.index.equals(table.frame.index) and terms.frame["part"].equals(table.frame["part"])
    assert int(terms.frame["normal"].sum()) == sum("normal" in t for t in listed)
    assert int(terms.frame["pseudonodule"].sum()) == sum("pseudonodule" in t for t in listed) > 0
    assert int(terms.frame["Effusion"].sum()) == int(table.frame["Effusion"].sum())


def write_mimic(root: Path, negbio: bool = False, images: bool = False, n_subjects: int = 6) -> Path:
    """A MIMIC-CXR-JPG root: subjects x 1 study x (PA + LATERAL); study 50000005 has no label row. Subjects 0-2 are
    train, 3 validate, 4-5 test. CheXpert labels: Edema 1.0 for subjects 0-1, -1.0 for 2; No Finding 1.0 for 3-5.
    With `negbio`, a -negbio file that disagrees: Edema 0.0 for 0-1, 1.0 for 2-4. With `images`, a 40x48 JPEG each.
    Subjects from 6 on (`n_subjects` > 6) cycle test, train, train, validate; Edema 1.0 when odd in the CheXpert file
    (else blank), 1.0 when (s // 4) is odd in the NegBio file (else 0.0)."""
    root.mkdir(parents=True, exist_ok=True)
    split = ["dicom_id,study_id,subject_id,split"]
    meta = ["dicom_id,subject_id,study_id,PerformedProcedureDescription,ViewPosition,Rows,Columns"]
    labels = {"chexpert": ["subject_id,study_id," + ",".join(mimic_classes())]}
    if negbio:
        labels["negbio"] = list(labels["chexpert"])
    rng = np.random.default_rng(0)
    for s in range(n_subjects):
        subject, study = 10000000 + s, 50000000 + s
        part = (
            ["train", "train", "train", "validate", "test", "test"][s]
            if s < 6
            else ("test", "train", "train", "validate")[s % 4 - 2]
        )
        for view in ("PA", "LATERAL"):
            dicom = f"d{s}{view[0].lower()}"
            split.append(f"{dicom},{study},{subject},{part}")
            meta.append(f"{dicom},{subject},{study},CHEST (PA AND LAT),{view},3000,2500")
            if images:
                from PIL import Image

                path = root / f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), "L").save(path, quality=90)
        if s == 5:
            continue
        if s < 6:
            cells = {"Edema": "1.0" if s < 2 else "-1.0" if s == 2 else "", "No Finding": "1.0" if s >= 3 else ""}
        else:
            cells = {"Edema": "1.0" if s % 2 else ""}
        labels["chexpert"].append(f"{subject},{study}," + ",".join(cells.get(c, "") for c in mimic_classes()))
        if negbio:
            edema = ("0.0" if s < 2 else "1.0") if s < 6 else ("1.0" if (s // 4) % 2 else "0.0")
            labels["negbio"].append(
                f"{subject},{study}," + ",".join(edema if c == "Edema" else "" for c in mimic_classes())
            )
    for name, lines in (("split", split), ("metadata", meta), *labels.items()):
        with gzip.open(root / f"mimic-cxr-2.0.0-{name}.csv.gz", "wt") as handle:
            handle.write("\n".join(lines) + "\n")
    return root


def mimic_classes() -> tuple[str, ...]:
    from cxrres.data.datasets import mimic

    return mimic.CLASSES


def test_mimic_synthetic_official_split_study_labels_and_views(tmp_path: Path) -> None:
    root = write_mimic(tmp_path / "mimic")
    assert detect_dataset(root) == "mimic"
    table = open_dataset(root)
    frame = table.frame
    assert frame["part"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 2} and set(frame["view"]) == {"PA"}
    assert frame.index[0] == "files/p10/p10000000/s50000000/d0p.jpg" == frame["path"].iloc[0]
    assert (frame["Edema"] == 1).sum() == 2 and (frame["Edema"] == -1).sum() == 1 and frame["Edema"].isna().sum() == 3
    assert frame.loc["files/p10/p10000005/s50000005/d5p.jpg", list(table.classes)].isna().all()  # no label row
    everything = open_dataset(root, options=DataOptions(views="all"))
    assert len(everything.frame) == 12 and (everything.frame["Edema"] == 1).sum() == 4  # study labels on each image
    text = root / "mimic-cxr-2.0.0-split.csv.gz"
    with gzip.open(text, "rt") as handle:
        body = handle.read().replace(",validate", ",valid", 1)
    with gzip.open(text, "wt") as handle:
        handle.write(body)
    with pytest.raises(
        DataFormatError, match=r"split.csv.gz:8: column 'split': 'valid' is not train, validate or test"
    ):
        open_dataset(root)


def test_describe_any_data_set_from_metadata(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from cxrres.cli import main

    root = write_chexpert(tmp_path / "cx")
    assert main(["describe", "--data", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "chexpert" and summary["images"] == {"train": 18, "val": 2, "test": 4}
    edema = summary["classes"]["Edema"]
    assert (
        sum(edema["positive"].values()) == 7
        and sum(edema["uncertain"].values()) == 7
        and sum(edema["blank"].values()) == 7
    )
    assert main(["describe", "--data", str(write_mimic(tmp_path / "m")), "--views", "all"]) == 0
    assert (
        "data set mimic: train 6 images / 3 patients, val 2 images / 1 patients, test 4 images / 2 patients"
        in capsys.readouterr().out
    )
    assert (
        main(["describe", "--data", str(write_padchest(tmp_path / "p", True)), "--dataset", "padchest", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["classes"]["Effusion"]["positive"]["train"] >= 0
    (tmp_path / "none").mkdir()
    assert main(["describe", "--data", str(tmp_path / "none")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no known data set found" in err
