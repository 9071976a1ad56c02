"""`cxrres verify RUN|STUDY|CARD|PREDICT_OUT`: recompute every written figure from the stored predictions and boxes and
compare it with every file that shows it.

Checked, per run: `auc.csv` (AUC, DeLong interval, counts, the bootstrap interval of the mean) from
`predictions_test.csv`; each `external_test/*/auc.csv` from its predictions; `operating_points.csv` (threshold,
validation sensitivity and specificity, counts) from `predictions_val.csv`; `localization_samples.csv` (detections
matched to the stored boxes again: precision, hit, TP, matched IoU) and `localization.csv` from the samples. Per study
also: every file of `comparison/` (recomputed with `compare_runs`, the study's `n_boot`), `key_results.md` and the key
table inside `report.md`; model cards (`*.onnx.md`, `*.pt.md`) anywhere below it. A model card: re-rendered from its run
and its exported file (SHA-256 included). A `cxrres predict` output folder: every `positive_<class>` call against the
written probability and the written threshold.

Numbers are compared at the precision they were written with: relative 1e-5 (files written with 6 significant digits
by earlier versions pass; any change in the fourth digit does not), float32 thresholds and calls exactly.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.errors import CxrresError

RTOL, ATOL = 1e-5, 1e-9
#: How many disagreements of one file are listed (the count says how many there are).
SHOWN_PER_FILE = 5


@dataclass
class Verification:
    """Files checked and the disagreements found (`file: what`)."""

    checked: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every recomputed figure agrees with every file that shows it."""
        return not self.problems

    def add(self, path: Path, problems: list[str]) -> None:
        """Record one checked file and its disagreements (at most SHOWN_PER_FILE listed)."""
        self.checked.append(path)
        shown = problems[:SHOWN_PER_FILE]
        more = [f"{path}: ... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
        self.problems += [f"{path}: {p}" for p in shown] + more


def _reparsed(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as a reader sees it after cxrres wrote it (the same CSV writer, parsed back)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    buffer.seek(0)
    return pd.read_csv(buffer)


def _cell(value) -> str:
    return "empty" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def frame_differences(written: pd.DataFrame, expected: pd.DataFrame, key: str | None = None) -> list[str]:
    """Disagreements between a written table and the recomputed one: columns, row count, then cell by cell (numbers
    within RTOL, text exactly); each names the row (its `key` value, else its line in the file) and the column."""
    expected = _reparsed(expected)
    problems = []
    missing = [c for c in expected.columns if c not in written.columns]
    if missing:
        problems.append(f"column(s) {', '.join(map(str, missing))} missing")
    if len(written) != len(expected):
        return problems + [f"{len(written)} rows written, {len(expected)} recomputed"]
    for column in [c for c in expected.columns if c in written.columns]:
        a, b = written[column], expected[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
            bad = ~(np.isclose(x, y, rtol=RTOL, atol=ATOL) | (np.isnan(x) & np.isnan(y)))
        else:
            bad = (a.astype(str).where(a.notna(), "") != b.astype(str).where(b.notna(), "")).to_numpy()
        for i in np.flatnonzero(bad):
            where = f"{key} {written[key].iloc[i]}" if key and key in written.columns else f"line {i + 2}"
            problems.append(f"{where}, {column}: written {_cell(a.iloc[i])}, recomputed {_cell(b.iloc[i])}")
    return problems


def text_differences(written: str, expected: str) -> list[str]:
    """The first differing line of a text file against its recomputed text (empty when equal)."""
    if written == expected:
        return []
    old, new = written.splitlines(), expected.splitlines()
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return [f"line {i + 1}: written {a!r}, recomputed {b!r}"]
    return [f"{len(old)} lines written, {len(new)} recomputed"]


def _check_table(result: Verification, path: Path, expected: pd.DataFrame, key: str | None = "class") -> None:
    if not path.is_file():
        return
    try:
        written = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        result.add(path, [f"not a readable CSV ({str(error).splitlines()[0]})"])
        return
    result.add(path, frame_differences(written, expected, key))


# --- a run ----------------------------------------------------------------------------------------------------


def _check_aucs(result: Verification, folder: Path, n_boot: int) -> None:
    from cxrres.evaluation.evaluate import auc_table

    if (folder / runs.AUC).is_file():
        _check_table(result, folder / runs.AUC, auc_table(runs.read_predictions(folder), n_boot=n_boot))


def _check_operating_points(result: Verification, run_dir: Path) -> None:
    from cxrres.evaluation.operating import OperatingRule, operating_points

    path = run_dir / runs.OPERATING_POINTS
    if not path.is_file() or not (run_dir / runs.PREDICTIONS_VAL).is_file():
        return
    written = pd.read_csv(path)
    val = runs.read_predictions(run_dir, runs.PREDICTIONS_VAL)
    problems = []
    for rule_text, rows in written.groupby("rule", sort=False):
        expected = operating_points(val.labels, val.scores, val.classes, OperatingRule.parse(str(rule_text)))
        problems += frame_differences(rows.reset_index(drop=True), expected, "class")
        exact = rows["threshold"].to_numpy(np.float64).astype(np.float32)
        recomputed = expected["threshold"].to_numpy(np.float64).astype(np.float32)
        for name, a, b in zip(rows["class"], exact, recomputed):
            if not (a == b or (np.isnan(a) and np.isnan(b))):
                problems.append(
                    f"class {name}, threshold: written {a!r} is not the validation probability {b!r} (float32)"
                )
    result.add(path, list(dict.fromkeys(problems)))


def _check_localization(result: Verification, run_dir: Path, iou_threshold: float) -> None:
    from cxrres.localization.localize import parse_boxes, summarise
    from cxrres.localization.saliency import score_boxes

    samples_path, summary_path = run_dir / runs.LOCALIZATION_SAMPLES, run_dir / runs.LOCALIZATION
    if not samples_path.is_file():
        return
    samples = pd.read_csv(samples_path)
    recomputed = []
    for _, group in samples.groupby(["image", "class"], sort=False):
        gts = [tuple(float(v) for v in r) for r in group[["gt_x", "gt_y", "gt_w", "gt_h"]].to_numpy()]
        first = group["detections"].iloc[0]
        detections = parse_boxes("" if pd.isna(first) else first)
        precision, hits, matches = score_boxes(detections, gts, iou_threshold)
        for (_, row), hit, match in zip(group.iterrows(), hits, matches):
            recomputed.append(
                {
                    **row.to_dict(),
                    "n_detections": len(detections),
                    "precision": precision,
                    "hit": int(hit),
                    "tp": sum(hits),
                    "matched_iou": round(match[1], 6) if match else 0.0,
                }
            )
    expected = pd.DataFrame(recomputed)[samples.columns]
    result.add(samples_path, frame_differences(samples, expected, None))
    if summary_path.is_file():
        order = [c for c in pd.read_csv(summary_path)["class"] if c != "mean"]
        _check_table(result, summary_path, summarise(samples, order))


def verify_run(
    run_dir: str | Path, n_boot: int | None = None, iou_threshold: float = 0.1, result: Verification | None = None
) -> Verification:
    """Recompute a run's tables from its predictions and boxes and compare them with the written files."""
    from cxrres.evaluation.evaluate import N_BOOT

    run_dir, result = Path(run_dir), result or Verification()
    runs.read_config(run_dir)  # one line when this is not a run directory
    n_boot = n_boot or N_BOOT
    try:
        _check_aucs(result, run_dir, n_boot)
        for folder in sorted((run_dir / runs.EXTERNAL_TEST).glob("*")):
            _check_aucs(result, folder, n_boot)
        _check_operating_points(result, run_dir)
        _check_localization(result, run_dir, iou_threshold)
    except CxrresError as error:  # a file that cannot be read is itself a finding
        result.problems.append(str(error))
    return result


# --- model cards, predict output, a study -----------------------------------------------------------------------


def verify_card(card: str | Path, result: Verification | None = None) -> Verification:
    """Re-render a model card from its run (named on its 'Exported by ... from `RUN`' line) and its exported file."""
    from cxrres.deploy.export import model_card, run_of_card

    card, result = Path(card), result or Verification()
    exported = card.with_name(card.name[: -len(".md")])
    text = card.read_text(encoding="utf-8")
    run_dir, fmt = run_of_card(text, card)
    if not exported.is_file():
        result.add(card, [f"the exported file {exported.name} is not beside it"])
        return result
    config = runs.read_settings(run_dir)
    result.add(card, text_differences(text, model_card(run_dir, config, config.classes, exported, fmt)))
    return result


def verify_predictions(folder: str | Path, result: Verification | None = None) -> Verification:
    """A `cxrres predict` output: every call equals (written probability >= written threshold), as float32."""
    from cxrres.evaluation.operating import positive_calls, read_table
    from cxrres.deploy.predict import OPERATING_FILE, POSITIVE_PREFIX, PREDICTIONS_FILE

    folder, result = Path(folder), result or Verification()
    table = pd.read_csv(folder / PREDICTIONS_FILE)
    ops = read_table(folder / OPERATING_FILE).set_index("class") if (folder / OPERATING_FILE).is_file() else None
    problems = []
    if ops is None:
        problems.append(f"no {OPERATING_FILE} beside it: the thresholds of its calls are not recorded")
    for column in [c for c in table.columns if c.startswith(POSITIVE_PREFIX)] if ops is not None else []:
        name = column[len(POSITIVE_PREFIX) :]
        threshold = np.float32(ops.loc[name, "threshold"])
        written = table[name].to_numpy(np.float64).astype(np.float32)
        expected = positive_calls(written[:, None], np.array([threshold]))[:, 0]  # the rule predict applied
        got = table[column].to_numpy(np.float64)
        for i in np.flatnonzero(~((got == expected) | (np.isnan(got) & np.isnan(expected)))):
            problems.append(
                f"line {i + 2}, {column}: written {_cell(got[i])} but {name} {written[i]!r} vs threshold "
                f"{threshold!r} gives {_cell(expected[i])}"
            )
    result.add(folder / PREDICTIONS_FILE, problems)
    return result


def verify_study(study_dir: str | Path, result: Verification | None = None) -> Verification:
    """Every run of a study, its comparison/, key_results.md, the key table in report.md and model cards below it."""
    from cxrres.evaluation.compare import compare_runs
    from cxrres.report.comparison import comparison_files
    from cxrres.report.document import key_table
    from cxrres.study.grid import make_study, study_from_file

    study_dir, result = Path(study_dir), result or Verification()
    study = make_study({**study_from_file(study_dir / runs.STUDY_FILE), "out": str(study_dir)})
    run_dirs = sorted(p for p in (study_dir / runs.STUDY_RUNS).glob("*") if (p / runs.PREDICTIONS).is_file())
    for run_dir in run_dirs:
        verify_run(run_dir, study.n_boot, float(study.localize.get("iou", 0.1)), result)
    if run_dirs:
        comparison = compare_runs(run_dirs, n_boot=study.n_boot)
        texts, frames = comparison_files(comparison)
        folder = study_dir / runs.COMPARISON
        for name, text in texts.items():
            if (folder / name).is_file():
                result.add(folder / name, text_differences((folder / name).read_text(encoding="utf-8"), text))
        for name, frame in frames.items():
            _check_table(result, folder / name, frame, "class" if "class" in frame.columns else None)
        key = key_table(comparison).to_markdown()
        if (study_dir / runs.KEY_TABLE).is_file():
            result.add(
                study_dir / runs.KEY_TABLE,
                text_differences((study_dir / runs.KEY_TABLE).read_text(encoding="utf-8"), key),
            )
        if (study_dir / runs.REPORT_MD).is_file():
            report = (study_dir / runs.REPORT_MD).read_text(encoding="utf-8")
            result.add(
                study_dir / runs.REPORT_MD,
                [] if key.strip() in report else ["its key table differs from the one recomputed from the runs"],
            )
    for card in sorted([*study_dir.rglob("*.onnx.md"), *study_dir.rglob("*.pt.md")]):
        verify_card(card, result)
    return result


def verify(path: str | Path, n_boot: int | None = None, iou_threshold: float = 0.1) -> Verification:
    """Verify whatever `path` is: a study, a run, a model card or a `cxrres predict` output folder."""
    from cxrres.deploy.predict import PREDICTIONS_FILE

    path = Path(path)
    if path.is_file() and path.name.endswith((".onnx.md", ".pt.md")):
        return verify_card(path)
    if (path / runs.STUDY_FILE).is_file():
        return verify_study(path)
    if (path / runs.CONFIG).is_file():
        return verify_run(path, n_boot, iou_threshold)
    if (path / PREDICTIONS_FILE).is_file():
        return verify_predictions(path)
    raise CxrresError(f"{path}: nothing to verify (not a study, a run, a model card or a `cxrres predict` output)")
