"""Test-time resolution (`cxrres evaluate RUN --test-resolution 64,128,256`): a trained run scored on its own test
images at other input sizes.

The test images are those of the run's predictions_test.csv (same images, labels with -1 masked out, patients), read
from the data set's resolution caches at each size (the same preprocessing as training: `DataSource.prepare` builds or
reuses them) and scored with the run's best checkpoint in the one scoring precision (`inference.predict`). The numbers
are `evaluate.auc_table`'s, so the train resolution's rows equal auc.csv's. Written to RUN/auc_by_test_resolution.csv
(`runs.AUC_BY_TEST_RESOLUTION`): class, test_resolution_px, auc, ci_low, ci_high, n_pos, n_neg (and `mean` rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from cxrres import runs
from cxrres.data.cache import parse_resolutions
from cxrres.data.torch_dataset import CacheDataset
from cxrres.data.source import DataSource
from cxrres.errors import CxrresError
from cxrres.evaluation.evaluate import MEAN, N_BOOT, auc_table
from cxrres.inference.network import load_run_model, predict
from cxrres.inference.rundata import run_source
from cxrres.models.registry import check_arch

COLUMNS: tuple[str, ...] = ("class", "test_resolution_px", "auc", "ci_low", "ci_high", "n_pos", "n_neg")
MIN_PX, MAX_PX = 32, 1024  # the test resolutions a study or `--test-resolution` may ask for


def parse_test_resolutions(value: str | Iterable[int], where: str = "--test-resolution") -> tuple[int, ...]:
    """Sorted unique test resolutions (px) from "64,128" or a list of ints, each in [MIN_PX, MAX_PX]; one-line
    CxrresError naming `where` otherwise."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise CxrresError(f"{where}: give a list of resolutions in px (e.g. 64,128,256), not {value!r}")
    out = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or isinstance(item, float) or not text.isdigit():
            raise CxrresError(f"{where}: {item!r} is not a whole number of pixels")
        if not MIN_PX <= int(text) <= MAX_PX:
            raise CxrresError(f"{where}: {text} px out of range [{MIN_PX}, {MAX_PX}]")
        out.append(int(text))
    return parse_resolutions(out)


def score_at_resolutions(
    run_dir: str | Path,
    resolutions_px: Iterable[int],
    level: float = 0.95,
    n_boot: int = N_BOOT,
    source: DataSource | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """`COLUMNS` (+ note) for the run's test images scored at each resolution (the train resolution always included,
    as the reference); refuses, before any work, a resolution the run's architecture cannot take."""
    run_dir = Path(run_dir)
    config = runs.read_settings(run_dir)
    wanted = sorted(set(resolutions_px) | {int(config.resolution_px)})
    for resolution in wanted:
        check_arch(config.arch, resolution)
    own = runs.read_predictions(run_dir)
    source = run_source(run_dir, source=source, progress=progress, resolutions_px=wanted)
    model, _, classes = load_run_model(run_dir)
    columns = [classes.index(name) for name in own.classes]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tables = []
    for resolution in wanted:
        cache = source.cache(resolution)
        absent = [name for name in own.images if name not in cache.rows]
        if absent:
            raise CxrresError(
                f"{source.cache_dir}: {len(absent):,} of the run's {len(own.images):,} test images are not "
                f"in the {resolution}-px cache (first: {', '.join(absent[:3])})"
            )
        dataset = CacheDataset(cache, own.images, own.labels.astype(np.float32))
        scores = predict(model, dataset, config, device)
        scored = runs.Predictions(own.images, own.classes, scores[:, columns], own.labels, own.patient_ids)
        tables.append(auc_table(scored, level, n_boot).assign(test_resolution_px=resolution))
    table = pd.concat(tables, ignore_index=True)
    return table[[*COLUMNS, "note"]]


def evaluate_test_resolutions(
    run_dir: str | Path,
    resolutions_px: Iterable[int],
    level: float = 0.95,
    n_boot: int = N_BOOT,
    out: str | Path | None = None,
    source: DataSource | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """`score_at_resolutions`, written to auc_by_test_resolution.csv in `out` or the run directory (see
    `runs.result_dir`); `table.attrs["written"]` is the file or None."""
    table = score_at_resolutions(run_dir, resolutions_px, level, n_boot, source, progress)
    where = runs.result_dir(run_dir, out)
    if where is not None:
        runs.write_csv_atomic(where / runs.AUC_BY_TEST_RESOLUTION, table)
    table.attrs["written"] = where / runs.AUC_BY_TEST_RESOLUTION if where is not None else None
    return table


def scored_resolutions(run_dir: str | Path) -> set[int]:
    """The test resolutions (px) RUN/auc_by_test_resolution.csv holds (empty when it is absent)."""
    path = Path(run_dir) / runs.AUC_BY_TEST_RESOLUTION
    return set(pd.read_csv(path)["test_resolution_px"].astype(int)) if path.is_file() else set()


def format_table(table: pd.DataFrame) -> str:
    """What `cxrres evaluate --test-resolution` prints: the mean AUC [interval] at each test resolution."""
    means = table[table["class"] == MEAN]
    return "\n".join(
        f"test {int(r['test_resolution_px']):>5} px: mean AUC {r['auc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        for _, r in means.iterrows()
    )


def train_test_long(run_dirs: list[Path], headings: list[str], train_px: list[int]) -> pd.DataFrame:
    """heading, resolution_px (train), test_resolution_px, auc (the mean row) of every run that has an
    auc_by_test_resolution.csv; empty when none has."""
    frames = []
    for run_dir, heading, resolution in zip(run_dirs, headings, train_px):
        path = Path(run_dir) / runs.AUC_BY_TEST_RESOLUTION
        if path.is_file():
            table = pd.read_csv(path)
            mean = table[table["class"] == MEAN]
            frames.append(
                pd.DataFrame(
                    {
                        "heading": heading,
                        "resolution_px": int(resolution),
                        "test_resolution_px": mean["test_resolution_px"].astype(int).to_numpy(),
                        "auc": mean["auc"].to_numpy(),
                    }
                )
            )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["heading", "resolution_px", "test_resolution_px", "auc"])
    )
