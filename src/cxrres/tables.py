"""Formatting of result tables as Markdown, LaTeX and CSV; the best value per row is marked (bold)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def wide(long: pd.DataFrame, value: str, row: str = "class", column: str = "heading") -> pd.DataFrame:
    """Long table -> one row per `row` (in first-seen order) and one column per `column` (in first-seen order)."""
    table = long.pivot(index=row, columns=column, values=value)
    return table.loc[list(dict.fromkeys(long[row])), list(dict.fromkeys(long[column]))]


def best_mask(values: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """True where a cell equals its row's best value at the printed precision (3 decimals; ties all marked)."""
    rounded = values.round(3)
    best = rounded.max(axis=1) if higher_is_better else rounded.min(axis=1)
    return rounded.eq(best, axis=0) & rounded.notna()


def _cell(value: float, low: float | None, high: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _cells(long: pd.DataFrame, value: str, low: str | None, high: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    values = wide(long, value)
    lows = wide(long, low) if low else values * np.nan
    highs = wide(long, high) if high else values * np.nan
    text = values.copy().astype(object)
    for r in values.index:
        for c in values.columns:
            text.loc[r, c] = _cell(values.loc[r, c], lows.loc[r, c] if low else None, highs.loc[r, c] if high else None)
    return values, text


def markdown_table(long: pd.DataFrame, value: str = "auc", low: str | None = "ci_low", high: str | None = "ci_high",
                   first: str = "Class", higher_is_better: bool = True) -> str:
    """A Markdown table (rows: classes, columns: runs) with the best value per row in bold."""
    values, text = _cells(long, value, low, high)
    best = best_mask(values, higher_is_better)
    lines = ["| " + " | ".join([first, *values.columns]) + " |", "|" + "---|" * (len(values.columns) + 1)]
    for r in values.index:
        cells = [f"**{text.loc[r, c]}**" if best.loc[r, c] else text.loc[r, c] for c in values.columns]
        lines.append("| " + " | ".join([str(r), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex_table(long: pd.DataFrame, value: str = "auc", low: str | None = "ci_low", high: str | None = "ci_high",
                first: str = "Class", higher_is_better: bool = True) -> str:
    """A LaTeX tabular (booktabs) with the best value per row in bold."""
    values, text = _cells(long, value, low, high)
    best = best_mask(values, higher_is_better)
    lines = [r"\begin{tabular}{l" + "c" * len(values.columns) + "}", r"\toprule",
             " & ".join([first, *map(_latex_escape, values.columns)]) + r" \\", r"\midrule"]
    for r in values.index:
        cells = [(r"\textbf{%s}" % text.loc[r, c]) if best.loc[r, c] else text.loc[r, c] for c in values.columns]
        lines.append(" & ".join([_latex_escape(r), *cells]).replace("–", "--") + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_table(long: pd.DataFrame, value: str = "auc", low: str | None = "ci_low", high: str | None = "ci_high",
              higher_is_better: bool = True) -> pd.DataFrame:
    """Wide CSV frame: the row name, per run `<run>`, `<run> ci_low`, `<run> ci_high`, and `best` (the best run(s))."""
    values = wide(long, value)
    best = best_mask(values, higher_is_better)
    out = pd.DataFrame({"class": values.index})
    for c in values.columns:
        out[c] = values[c].to_numpy()
        if low:
            out[f"{c} {low}"] = wide(long, low)[c].to_numpy()
            out[f"{c} {high}"] = wide(long, high)[c].to_numpy()
    out["best"] = [" / ".join(values.columns[best.loc[r]]) for r in values.index]
    return out
