"""A trained run scored on another data set's test part (`cxrres evaluate RUN --data OTHER_ROOT`): external validation
over the classes both data sets have (the one table of names, `data/datasets/names.py`).

The other root is read as its data set (detected, or `dataset`), split as cxrres splits it (its official test part or
the seeded carve, `DataOptions` defaults), cached at the run's resolution in its default cache, and its test images are
scored with the run's best checkpoint. The run's `uncertain` policy is applied to the other data set's raw labels
(masked: -1), and the table is `evaluate.auc_table`, exactly as for the run's own test part. Written to
`RUN/external_test/<dataset>-<root hash>/`: `predictions_test.csv` (under the run's class names) and, last, `auc.csv`
with the data set, its root and its class beside each of the run's classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrres import runs
from cxrres.config import TrainConfig
from cxrres.data.torch_dataset import CacheDataset
from cxrres.data.datasets import DatasetTable
from cxrres.data.datasets.names import shared_classes
from cxrres.data.layout import DataRoot
from cxrres.data.source import DataOptions, DataSource, read_table
from cxrres.errors import CxrresError
from cxrres.evaluation.evaluate import MEAN, N_BOOT, auc_table, format_table, table_as_json
from cxrres.inference.network import load_run_model, predict
from cxrres.inference.rundata import masked_labels


@dataclass(frozen=True)
class ExternalResult:
    """What `evaluate_external` wrote: the folder, the other data set and root, the (run class, its class) pairs scored,
    the AUC table, and how many of its test images were left out as not cached (only with `allow_missing`)."""

    out_dir: Path | None  # None: the run directory could not be written and no --out was given (printed only)
    dataset: str
    root: Path
    pairs: list[tuple[str, str]]
    table: pd.DataFrame
    missing: int = 0

    def summary(self) -> str:
        """What `cxrres evaluate --data` prints: one line per class (`Effusion (Pleural Effusion)`), the mean, the
        file."""
        other = dict(self.pairs)
        shown = self.table.assign(
            **{"class": [f"{c} ({other[c]})" if other.get(c, c) != c else c for c in self.table["class"]]}
        )
        left_out = f"; {self.missing:,} test images not cached, left out" if self.missing else ""
        return f"{self.dataset} at {self.root}: {len(self.pairs)} shared classes{left_out}\n{format_table(shown)}" + (
            f"\nwrote {self.out_dir / runs.AUC}" if self.out_dir else ""
        )

    def as_json(self) -> dict:
        """`--json`: evaluate's {"auc": {...}} plus the data set, its root and the class pairs (run class: its
        class)."""
        return table_as_json(self.table) | {
            "dataset": self.dataset,
            "data_root": str(self.root),
            "classes": dict(self.pairs),
        }


def run_dataset(config: TrainConfig) -> str:
    """The data set a run was trained on (`auto` in config.yaml: a run from before other data sets, i.e. NIH)."""
    return "nih" if config.dataset == "auto" else config.dataset


def class_pairs(config: TrainConfig, table: DatasetTable) -> list[tuple[str, str]]:
    """(run class, other data set's class) naming the same finding, in the run's order; one line listing both class
    lists when there is none."""
    pairs = shared_classes(run_dataset(config), config.classes, table.dataset, table.classes)
    if not pairs:
        raise CxrresError(
            f"{table.root}: no class in common between the run ({run_dataset(config)}: "
            f"{', '.join(config.classes)}) and this {table.dataset} data set ({', '.join(table.classes)})"
        )
    return pairs


def prepare_external(
    data: str | Path,
    config: TrainConfig,
    resolutions_px: list[int],
    options: DataOptions = DataOptions(),
    progress: bool = True,
) -> DataSource:
    """Another root read under `options` and cached at `resolutions_px` (its default cache), once it is known to share a
    class with the run `config` (refused before anything is cached). The metadata is read once, for both."""
    root = DataRoot.at(data)
    table = read_table(root, options)
    class_pairs(config, table)
    return DataSource.prepare(root, options, resolutions_px, None, progress, table)


def external_predictions(
    model: torch.nn.Module,
    config: TrainConfig,
    source: DataSource,
    pairs: list[tuple[str, str]],
    allow_missing: bool = False,
) -> tuple[runs.Predictions, int]:
    """The run's probabilities of the paired classes on the other data set's test part, with that set's labels under the
    run's uncertain policy (1/0, -1 masked); and the number of test images left out as not cached."""
    table, cache = source.table, source.cache(config.resolution_px)
    images = table.images("test")
    raw = table.labels("test")[:, [table.classes.index(other) for _, other in pairs]]
    labels = masked_labels(raw, config.uncertain).astype(np.int8)
    present = np.array([name in cache.rows for name in images], dtype=bool)
    missing = int((~present).sum())
    if missing and not allow_missing:
        absent = [name for name, ok in zip(images, present) if not ok]
        raise CxrresError(
            f"{source.root.root}: {missing:,} of {len(images):,} test images are not in the cache (missing "
            f"or unreadable; first: {', '.join(absent[:3])}); --allow-missing scores the others"
        )
    images, labels = [name for name, ok in zip(images, present) if ok], labels[present]
    if not images:
        raise CxrresError(f"{source.root.root}: no test image of this {table.dataset} data set is in the cache")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probabilities = predict(model, CacheDataset(cache, images, labels), config, device)
    columns = [config.classes.index(own) for own, _ in pairs]
    patients = table.frame["patient_id"].reindex(images).astype(str).tolist()
    return runs.Predictions(images, [own for own, _ in pairs], probabilities[:, columns], labels, patients), missing


def evaluate_external(
    run_dir: str | Path,
    data: str | Path,
    options: DataOptions = DataOptions(),
    level: float = 0.95,
    n_boot: int = N_BOOT,
    allow_missing: bool = False,
    progress: bool = True,
    source: DataSource | None = None,
    out: str | Path | None = None,
) -> ExternalResult:
    """Score a run on the test part of the data set at `data` (read under `options`: its data set, detected by
    default, and views; cxrres's default split) over the shared classes; write predictions_test.csv and
    auc.csv under RUN/external_test/<dataset>-<root hash>/ (under `out` instead when given; nothing, with a warning,
    when the run is read-only: `runs.result_dir`). `source`: that root already prepared (a study's)."""
    run_dir, root = Path(run_dir), Path(data).expanduser().resolve()
    config = runs.read_settings(run_dir)
    if config.data and Path(config.data).expanduser().resolve() == root:
        raise CxrresError(f"{root}: this is the run's own data root; `cxrres evaluate {run_dir}` scores its test part")
    if source is None or not source.serves(root, options, config.resolution_px):
        source = prepare_external(root, config, [config.resolution_px], options, progress)
    pairs = class_pairs(config, source.table)
    model, _, _ = load_run_model(run_dir)
    predictions, missing = external_predictions(model, config, source, pairs, allow_missing)
    table = auc_table(predictions, level, n_boot)
    other = dict(pairs)
    table.insert(1, runs.EXTERNAL_CLASS, [other.get(name, "") if name != MEAN else "" for name in table["class"]])
    table.insert(0, runs.EXTERNAL_ROOT, str(root))
    table.insert(0, runs.EXTERNAL_DATASET, source.dataset)
    base = runs.result_dir(run_dir, out)
    where = runs.external_dir(base, source.dataset, root) if base is not None else None
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        runs.write_predictions(where / runs.PREDICTIONS, predictions)
        runs.write_csv_atomic(where / runs.AUC, table)  # written last: its presence means the scoring is complete
    return ExternalResult(where, source.dataset, root, pairs, table, missing)
