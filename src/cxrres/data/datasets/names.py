"""The one table of which class names mean the same finding across data sets (`Effusion` ↔ `Pleural Effusion`, ...).

Each row is one finding (its key, the NIH spelling where NIH has it) and its name in every data set that labels it;
only one-to-one correspondences are listed (NIH's `Nodule` and `Mass` against CheXpert's `Lung Lesion` or VinDr's
`Nodule/Mass`, or NIH's `Infiltration` against `Lung Opacity`, are not the same finding and are left out). A plain
CSV data set's classes are matched by name: a column named as any data set names a finding is that finding.
Documented in docs/data.md ("Class names across data sets").
"""

from __future__ import annotations

from typing import Sequence

#: finding -> {data set: its class name}. PadChest's default classes are the NIH findings under NIH's names.
FINDINGS: dict[str, dict[str, str]] = {
    "Atelectasis": {
        "nih": "Atelectasis",
        "chexpert": "Atelectasis",
        "mimic": "Atelectasis",
        "padchest": "Atelectasis",
        "vindr": "Atelectasis",
    },
    "Cardiomegaly": {
        "nih": "Cardiomegaly",
        "chexpert": "Cardiomegaly",
        "mimic": "Cardiomegaly",
        "padchest": "Cardiomegaly",
        "vindr": "Cardiomegaly",
    },
    "Consolidation": {
        "nih": "Consolidation",
        "chexpert": "Consolidation",
        "mimic": "Consolidation",
        "padchest": "Consolidation",
        "vindr": "Consolidation",
    },
    "Edema": {"nih": "Edema", "chexpert": "Edema", "mimic": "Edema", "padchest": "Edema"},
    "Effusion": {
        "nih": "Effusion",
        "chexpert": "Pleural Effusion",
        "mimic": "Pleural Effusion",
        "padchest": "Effusion",
        "vindr": "Pleural effusion",
    },
    "Emphysema": {"nih": "Emphysema", "padchest": "Emphysema"},
    "Fibrosis": {"nih": "Fibrosis", "padchest": "Fibrosis", "vindr": "Pulmonary fibrosis"},
    "Hernia": {"nih": "Hernia", "padchest": "Hernia"},
    "Infiltration": {"nih": "Infiltration", "padchest": "Infiltration", "vindr": "Infiltration"},
    "Mass": {"nih": "Mass", "padchest": "Mass"},
    "Nodule": {"nih": "Nodule", "padchest": "Nodule"},
    "Pleural_Thickening": {
        "nih": "Pleural_Thickening",
        "padchest": "Pleural_Thickening",
        "vindr": "Pleural thickening",
    },
    "Pneumonia": {"nih": "Pneumonia", "chexpert": "Pneumonia", "mimic": "Pneumonia", "padchest": "Pneumonia"},
    "Pneumothorax": {
        "nih": "Pneumothorax",
        "chexpert": "Pneumothorax",
        "mimic": "Pneumothorax",
        "padchest": "Pneumothorax",
        "vindr": "Pneumothorax",
    },
    "Lung Opacity": {
        "chexpert": "Lung Opacity",
        "mimic": "Lung Opacity",
        "rsna": "Lung Opacity",
        "vindr": "Lung Opacity",
    },
    "Fracture": {"chexpert": "Fracture", "mimic": "Fracture"},
    "No Finding": {"chexpert": "No Finding", "mimic": "No Finding"},
    "Enlarged Cardiomediastinum": {"chexpert": "Enlarged Cardiomediastinum", "mimic": "Enlarged Cardiomediastinum"},
    "Lung Lesion": {"chexpert": "Lung Lesion", "mimic": "Lung Lesion"},
    "Pleural Other": {"chexpert": "Pleural Other", "mimic": "Pleural Other"},
    "Support Devices": {"chexpert": "Support Devices", "mimic": "Support Devices"},
    "Nodule/Mass": {"vindr": "Nodule/Mass"},
}


def finding_of(dataset: str, name: str) -> str | None:
    """The finding a class of `dataset` is (its FINDINGS key), or None. A data set not in the table (a plain CSV)
    matches a name as any data set spells it, ignoring case and `_` versus space."""
    for finding, names in FINDINGS.items():
        if names.get(dataset) == name:
            return finding
    if any(dataset in names for names in FINDINGS.values()):
        return None
    key = _folded(name)
    for finding, names in FINDINGS.items():
        if key == _folded(finding) or any(key == _folded(n) for n in names.values()):
            return finding
    return None


def name_in(dataset: str, finding: str, classes: Sequence[str]) -> str | None:
    """The class of `dataset` among `classes` that is `finding`, or None."""
    for name in classes:
        if finding_of(dataset, name) == finding:
            return name
    return None


def shared_classes(
    source: str, source_classes: Sequence[str], target: str, target_classes: Sequence[str]
) -> list[tuple[str, str]]:
    """(source class, target class) pairs naming the same finding, in the order of `source_classes`."""
    pairs = []
    for name in source_classes:
        finding = finding_of(source, name)
        other = name_in(target, finding, target_classes) if finding is not None else None
        if other is not None:
            pairs.append((name, other))
    return pairs


def _folded(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


#: The data sets of FINDINGS as the columns of docs/data.md's table ("Class names across data sets"), with headings.
DATASET_HEADINGS: dict[str, str] = {
    "nih": "NIH ChestX-ray14",
    "chexpert": "CheXpert",
    "mimic": "MIMIC-CXR-JPG",
    "padchest": "PadChest",
    "rsna": "RSNA Pneumonia",
    "vindr": "VinDr-CXR",
}


def markdown_table() -> str:
    """FINDINGS as the Markdown table in docs/data.md: one row per finding, its class name in each data set (– where
    the data set does not label it)."""
    lines = ["| finding | " + " | ".join(DATASET_HEADINGS.values()) + " |", "|---" * (len(DATASET_HEADINGS) + 1) + "|"]
    for finding, names in FINDINGS.items():
        lines.append(
            f"| {finding} | " + " | ".join(f"`{names[d]}`" if d in names else "–" for d in DATASET_HEADINGS) + " |"
        )
    return "\n".join(lines) + "\n"
