"""The 14 ChestX-ray14 findings and the spellings found in the official files."""

from __future__ import annotations

#: The 14 labels in Data_Entry's (alphabetical) order; this is cxrres's column order everywhere.
CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)

#: Column order of the CheXNet split files (arnoweng/CheXNet, also used by `official_with_val`).
CHEXNET_ORDER: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

#: The 8 classes that have official boxes in BBox_List_2017.csv.
BOX_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
)

NO_FINDING = "No Finding"

#: Spellings in the official files that mean one of CLASSES.
ALIASES: dict[str, str] = {"Infiltrate": "Infiltration"}
#: How BBox_List_2017.csv spells a class where it differs from CLASSES (the inverse of ALIASES).
NIH_BOX_NAMES: dict[str, str] = {v: k for k, v in ALIASES.items()}

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

#: CHEXNET_TO_CLASSES[j] is the CLASSES index of CheXNet column j.
CHEXNET_TO_CLASSES: tuple[int, ...] = tuple(CLASS_INDEX[name] for name in CHEXNET_ORDER)


def canonical_label(name: str) -> str | None:
    """Return the CLASSES spelling of `name` (aliases resolved), or None if it is not a finding."""
    name = ALIASES.get(name, name)
    return name if name in CLASS_INDEX else None
