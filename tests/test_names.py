"""The class-name table across data sets (`data/datasets/names.py`)."""

from cxrres.data.datasets import chexpert, mimic, rsna, vindr
from cxrres.data.datasets.names import FINDINGS, finding_of, shared_classes
from cxrres.data.labels import CLASSES as NIH_CLASSES


def test_every_name_in_the_table_is_a_class_of_its_data_set():
    classes = {
        "nih": NIH_CLASSES,
        "chexpert": chexpert.CLASSES,
        "mimic": mimic.CLASSES,
        "padchest": NIH_CLASSES,
        "rsna": rsna.CLASSES,
        "vindr": vindr.CLASSES,
    }
    for finding, names in FINDINGS.items():
        for dataset, name in names.items():
            assert name in classes[dataset], (finding, dataset, name)
    # every NIH class is a finding of its own, under its own name
    assert all(finding_of("nih", c) == c for c in NIH_CLASSES)


def test_nih_against_chexpert_shares_exactly_the_seven_common_findings():
    pairs = shared_classes("nih", NIH_CLASSES, "chexpert", chexpert.CLASSES)
    assert pairs == [
        ("Atelectasis", "Atelectasis"),
        ("Cardiomegaly", "Cardiomegaly"),
        ("Consolidation", "Consolidation"),
        ("Edema", "Edema"),
        ("Effusion", "Pleural Effusion"),
        ("Pneumonia", "Pneumonia"),
        ("Pneumothorax", "Pneumothorax"),
    ]
    # symmetric, and Lung Lesion is not Nodule or Mass
    back = shared_classes("chexpert", chexpert.CLASSES, "nih", NIH_CLASSES)
    assert sorted((b, a) for a, b in back) == sorted(pairs)
    assert finding_of("chexpert", "Lung Lesion") != finding_of("nih", "Nodule")


def test_a_plain_csv_matches_by_any_spelling_and_nothing_else():
    assert finding_of("csv", "pleural effusion") == "Effusion"
    assert finding_of("csv", "Pleural_Thickening") == "Pleural_Thickening"
    assert finding_of("csv", "pleural thickening") == "Pleural_Thickening"
    assert finding_of("csv", "Tuberculosis") is None
    assert shared_classes("csv", ["Effusion", "Tuberculosis"], "vindr", vindr.CLASSES) == [
        ("Effusion", "Pleural effusion")
    ]
    # a known data set does not match loosely: VinDr's own spelling only
    assert finding_of("vindr", "Effusion") is None


def test_the_table_in_docs_is_the_one_in_names_py():
    from pathlib import Path

    from cxrres.data.datasets.names import DATASET_HEADINGS, markdown_table

    assert {d for names in FINDINGS.values() for d in names} <= set(DATASET_HEADINGS)  # every data set has a column
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    section = doc.split("## Class names across data sets\n", 1)[1].split("\n#", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|")) + "\n"
    assert table == markdown_table()
    assert len(table.splitlines()) == 2 + len(FINDINGS)
