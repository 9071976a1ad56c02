"""A run scored against radiologists' adjudicated labels instead of its text-mined ones (`cxrres evaluate RUN
--reference google2019`).

`google2019`: Google's labels of 4,376 NIH ChestX-ray14 images, four findings each adjudicated by several
radiologists (Majkowska et al., Radiology 2020; shipped in `resources/google2019/`, see its README). An NIH run's
test predictions are scored on its test images that have these labels, per Google finding that an NIH class
measures, beside the AUC on the same images under the run's own (text-mined) labels. Pure functions apart from
`evaluate_reference`, which reads the run and writes `auc_google2019.csv` into it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.data.layout import DataRoot
from cxrres.data.metadata import GOOGLE2019_FINDINGS, read_google2019
from cxrres.errors import CxrresError
from cxrres.evaluation.evaluate import auc_row

#: Reference standards `cxrres evaluate --reference` knows.
REFERENCES: tuple[str, ...] = ("google2019",)
#: Google finding -> the NIH classes whose probability scores it (the maximum where there are two). A finding is
#: scored only when the run predicts every one of them: a Nodule-only network is not scored against "Nodule or mass",
#: whose masses it was never asked to find.
GOOGLE2019_SCORED_BY: dict[str, tuple[str, ...]] = {
    "Pneumothorax": ("Pneumothorax",),
    "Nodule or mass": ("Nodule", "Mass"),
}
#: Google findings no NIH class measures, and why they are not scored.
GOOGLE2019_NOT_SCORED: dict[str, str] = {
    "Airspace opacity": (
        "no NIH class is airspace opacity: Consolidation, Pneumonia and Infiltration each cover only part of it"
    ),
    "Fracture": "NIH ChestX-ray14 has no fracture label",
}
#: Data_Entry fields of an image that must equal Google's record of it (its copy of NIH's Data_Entry) before the run is
#: scored: names alone would match a phantom's or another data set's images named like NIH's. Not the age or follow-up
#: number: Data_Entry_2017_v2020 corrected them (a third of Google's images differ by a year or more).
IDENTITY_FIELDS: dict[str, str] = {
    "patient_id": "patient",
    "sex": "sex",
    "view": "view",
    "width_px": "width",
    "height_px": "height",
}
#: Prefix of the columns of auc_google2019.csv that score the same images under the run's own (text-mined) labels.
NIH_PREFIX = "nih_"


def google2019_file() -> Path:
    """The shipped copy of Google's label file."""
    return Path(str(resources.files("cxrres") / "resources" / "google2019" / "google2019_nih-chest-xray-labels.csv.gz"))


def scored_by_text(classes: tuple[str, ...]) -> str:
    """How a finding is scored from the run's probabilities: `Pneumothorax`, `max(Nodule, Mass)`."""
    return classes[0] if len(classes) == 1 else f"max({', '.join(classes)})"


def combined_labels(labels: np.ndarray) -> np.ndarray:
    """One label from several classes' (N, k) labels (1/0, -1 masked): 1 if any is 1, else -1 if any is masked,
    else 0."""
    labels = np.asarray(labels)
    return np.where((labels == 1).any(axis=1), 1, np.where((labels == -1).any(axis=1), -1, 0)).astype(np.int8)


def reference_table(predictions: runs.Predictions, reference: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per scorable Google finding: the images with Google labels among the predictions' (by Google's set), Google's
    n_pos, n_neg, AUC and DeLong interval, and the same under the predictions' own labels (`nih_...`)."""
    index = [i for i, name in enumerate(predictions.images) if name in reference.index]
    images = [predictions.images[i] for i in index]
    sets = reference.loc[images, "set_id"]
    rows = []
    for finding, classes in GOOGLE2019_SCORED_BY.items():
        if not all(c in predictions.classes for c in classes):
            continue
        columns = [predictions.classes.index(c) for c in classes]
        scores = predictions.scores[np.ix_(index, columns)].max(axis=1)
        google = reference.loc[images, finding].to_numpy(np.int8)
        nih = auc_row(combined_labels(predictions.labels[np.ix_(index, columns)]), scores, level)
        rows.append(
            {
                "finding": finding,
                "scored_by": scored_by_text(classes),
                "images": len(images),
                "images_google_test": int((sets == "test").sum()),
                "images_google_val": int((sets == "val").sum()),
                **auc_row(google, scores, level),
                **{NIH_PREFIX + k: v for k, v in nih.items()},
            }
        )
    return pd.DataFrame(rows)


def identity_differences(entry: pd.DataFrame, reference: pd.DataFrame, images: list[str]) -> list[str]:
    """Per image of `images` whose Data_Entry row (`entry`, read_data_entry's frame) is absent or differs from Google's
    (`reference`) in an IDENTITY_FIELDS field: 'NAME: FIELD A (Google: B)'; empty when all agree."""
    fields = list(IDENTITY_FIELDS)
    ours = dict(zip(entry.index, entry[fields].itertuples(index=False, name=None)))
    theirs = dict(zip(reference.index, reference[fields].itertuples(index=False, name=None)))
    out = []
    for name in images:
        if name not in ours:
            out.append(f"{name}: not in the run's Data_Entry")
            continue
        differing = [(text, a, b) for text, a, b in zip(IDENTITY_FIELDS.values(), ours[name], theirs[name]) if a != b]
        if differing:
            text, a, b = differing[0]
            out.append(f"{name}: {text} {a} (Google: {b})")
    return out


def check_nih_identity(run_dir: str | Path, data: str | None, reference: pd.DataFrame, images: list[str]) -> None:
    """One-line CxrresError unless every image of `images` has the same patient, sex, view and original size in the
    run's Data_Entry (at `data`, its data root) as in Google's record of the NIH image of that name."""
    try:
        entry = DataRoot.at(data).data_entry if data else None
    except CxrresError as exc:
        raise CxrresError(
            f"{run_dir}: cannot check that the run's images are NIH's ({exc}); --reference google2019 "
            "compares each image's Data_Entry row with Google's record of it"
        ) from None
    if entry is None:
        raise CxrresError(
            f"{run_dir}: config.yaml names no data root; --reference google2019 compares each image's "
            "Data_Entry row with Google's record of it"
        )
    differ = identity_differences(entry, reference, images)
    if differ:
        raise CxrresError(
            f"{run_dir}: {len(differ):,} of {len(images):,} images differ from Google's record of the NIH "
            f"image ({'/'.join(IDENTITY_FIELDS.values())}; first: {differ[0]}): this run's data ({data}) is "
            "not NIH ChestX-ray14"
        )


def evaluate_reference(
    run_dir: str | Path, reference: str = "google2019", level: float = 0.95, out: str | Path | None = None
) -> pd.DataFrame:
    """Score an NIH run's test predictions against `reference`, write `auc_google2019.csv` into the run (or `out`;
    nothing, with a warning, when the run is read-only: `runs.result_dir`), return it (`attrs["written"]`: the file).
    One-line CxrresError for a run of another data set, images that are not NIH's (`check_nih_identity`), no labelled
    test image, or no scorable finding."""
    if reference not in REFERENCES:
        raise CxrresError(f"unknown reference standard {reference!r}; choose one of {', '.join(REFERENCES)}")
    config = runs.read_settings(run_dir)
    dataset = config.dataset
    if dataset not in ("nih", "auto"):  # `auto` in config.yaml: a run from before data sets other than NIH existed
        raise CxrresError(
            f"{run_dir}: the run was trained on {dataset}; --reference google2019 labels NIH ChestX-ray14 images only"
        )
    predictions = runs.read_predictions(run_dir)
    labels = read_google2019(google2019_file())
    if not any(name in labels.index for name in predictions.images):
        counts = labels["set_id"].value_counts()
        raise CxrresError(
            f"{run_dir}: none of the run's {len(predictions.images):,} test images has a google2019 label "
            f"(the labels cover {len(labels):,} NIH images: {counts.get('test', 0):,} of Google's test set, "
            f"{counts.get('val', 0):,} of its validation set)"
        )
    check_nih_identity(run_dir, config.data, labels, [name for name in predictions.images if name in labels.index])
    table = reference_table(predictions, labels, level)
    if table.empty:
        needed = "; ".join(f"{f}: {' and '.join(c)}" for f, c in GOOGLE2019_SCORED_BY.items())
        raise CxrresError(
            f"{run_dir}: no google2019 finding can be scored from the run's classes "
            f"({', '.join(predictions.classes)}); needed ({needed})"
        )
    where = runs.result_dir(run_dir, out)
    table.attrs["written"] = where / runs.AUC_GOOGLE2019 if where is not None else None
    if where is not None:
        runs.write_csv_atomic(where / runs.AUC_GOOGLE2019, table)
    return table


def format_reference_table(table: pd.DataFrame) -> str:
    """The table as `cxrres evaluate --reference` prints it, Google's labels beside the run's own on the same images."""

    def cell(row: pd.Series, prefix: str) -> str:
        auc = (
            "undefined"
            if str(row[prefix + "note"]).startswith("undefined")
            else f"{row[prefix + 'auc']:.3f} [{row[prefix + 'ci_low']:.3f}, {row[prefix + 'ci_high']:.3f}]"
        )
        return f"{int(row[prefix + 'n_pos']):>5,} pos {int(row[prefix + 'n_neg']):>6,} neg  {auc:<21}"

    lines = [f"{'finding':<15} {'scored by':<18} {'images':>6}  {'Google (adjudicated)':<43} NIH (text-mined)"]
    for _, row in table.iterrows():
        lines.append(
            f"{row['finding']:<15} {row['scored_by']:<18} {int(row['images']):>6,}  {cell(row, '')}  "
            f"{cell(row, NIH_PREFIX)}"
        )
    left_out = [f for f in GOOGLE2019_FINDINGS if f not in set(table["finding"])]
    reasons = {
        **GOOGLE2019_NOT_SCORED,
        **{f: "the run does not predict " + " and ".join(c) for f, c in GOOGLE2019_SCORED_BY.items()},
    }
    lines += [f"not scored: {f} ({reasons[f]})" for f in left_out]
    return "\n".join(line.rstrip() for line in lines)
