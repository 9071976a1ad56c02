"""Operating points: the probability above which a class is called positive, chosen on a run's validation part.

A call is positive when probability >= threshold. Candidate thresholds are the distinct validation scores.
- `youden`: the threshold maximising Youden's J = sensitivity + specificity - 1 (the highest such threshold on ties);
- `sensitivity:S`: the highest threshold whose validation sensitivity is at least S (0 < S <= 1).
A class without positive or negative validation images gets no threshold (NaN): no call is made for it.

The run's Youden thresholds are chosen once, when it is trained, and stored in its `operating_points.csv`; thresholds
are float32 validation probabilities written with 9 significant digits (exact), so a call made from the written
probability and the written threshold is the call cxrres made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrres.errors import CxrresError


@dataclass(frozen=True)
class OperatingRule:
    """How a threshold is chosen: `youden`, or `sensitivity` with its target (0-1)."""

    kind: str
    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> "OperatingRule":
        """'youden' or 'sensitivity:0.9'."""
        name, _, value = text.partition(":")
        if name == "youden" and not value:
            return cls("youden")
        if name == "sensitivity":
            try:
                target = float(value)
            except ValueError:
                target = math.nan
            if 0 < target <= 1:
                return cls("sensitivity", target)
        raise CxrresError(
            f"unknown operating point {text!r}; use youden or sensitivity:S with 0 < S <= 1 (e.g. sensitivity:0.9)"
        )

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target:g}"


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, sensitivity, specificity) with a call positive when score >= threshold."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last index of each distinct score
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return s[last], tp / n_pos, (n_neg - fp) / n_neg  # true negatives / negatives: the ratio of counts, exactly


def choose_threshold(labels: np.ndarray, scores: np.ndarray, rule: OperatingRule) -> tuple[float, float, float]:
    """(threshold, sensitivity, specificity) on these validation cases; NaNs when a class has one kind of case only."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        return math.nan, math.nan, math.nan
    thresholds, sensitivity, specificity = roc_points(labels, scores)
    if rule.kind == "youden":
        i = int(np.argmax(sensitivity + specificity - 1.0))  # first maximum = highest threshold
    else:
        i = int(np.flatnonzero(sensitivity >= rule.target - 1e-12)[0])
    return float(thresholds[i]), float(sensitivity[i]), float(specificity[i])


def operating_points(labels: np.ndarray, scores: np.ndarray, classes: list[str], rule: OperatingRule) -> pd.DataFrame:
    """One row per class: rule, threshold, validation sensitivity and specificity, n_pos, n_neg (of the class's kept
    cases: labels -1 are left out)."""
    rows = []
    for c, name in enumerate(classes):
        kept = labels[:, c] != -1  # a label -1 is masked out of that class (uncertain)
        y, s = labels[kept, c], scores[kept, c]
        threshold, sens, spec = choose_threshold(y, s, rule) if kept.any() else (math.nan,) * 3
        rows.append(
            {
                "class": name,
                "rule": str(rule),
                "threshold": threshold,
                "sensitivity": sens,
                "specificity": spec,
                "n_pos": int(y.sum()),
                "n_neg": int(len(y) - y.sum()),
            }
        )
    return pd.DataFrame(rows)


#: The operating points of a run, chosen when it is trained.
DEFAULT_RULE = OperatingRule("youden")
#: Columns of an operating-points table (one row per class).
COLUMNS: tuple[str, ...] = ("class", "rule", "threshold", "sensitivity", "specificity", "n_pos", "n_neg")


def to_csv_text(table: pd.DataFrame) -> str:
    """An operating-points table as CSV text: thresholds with 9 significant digits (float32, exactly), other values in
    their shortest exact form."""
    out = table.copy()
    out["threshold"] = [("" if math.isnan(t) else "%.9g" % t) for t in table["threshold"].astype(float)]
    return out.to_csv(index=False)


def read_table(path) -> pd.DataFrame:
    """An operating-points CSV with its thresholds as the float32 values that were compared (NaN: no threshold)."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CxrresError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    missing = [c for c in ("class", "rule", "threshold") if c not in table.columns]
    if missing:
        raise CxrresError(f"{path}: line 1: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    table["threshold"] = pd.to_numeric(table["threshold"], errors="coerce").astype(np.float64).astype(np.float32)
    return table


def thresholds_for(table: pd.DataFrame, classes: list[str], rule: OperatingRule, where: str) -> np.ndarray:
    """(C,) float32 thresholds of `rule` in `classes` order from an operating-points table; an error naming `where`
    when the table lacks a class."""
    rows = table[table["rule"].astype(str) == str(rule)].set_index("class")
    missing = [c for c in classes if c not in rows.index]
    if missing:
        raise CxrresError(f"{where}: no {rule} threshold for {', '.join(missing)}")
    return rows.loc[classes, "threshold"].to_numpy(np.float32)


def positive_calls(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, C) float: 1.0 where score >= threshold, 0.0 below, NaN for a class without a threshold. Both are compared as
    float32, the precision in which they are computed and written."""
    scores, thresholds = np.asarray(scores, np.float32), np.asarray(thresholds, np.float32)
    calls = (scores >= thresholds[None, :]).astype(float)
    calls[:, np.isnan(thresholds)] = np.nan
    return calls
