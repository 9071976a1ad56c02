"""Result tables as Markdown, HTML, LaTeX and CSV; the best value per row is marked (bold)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.evaluation.metrics import MIN_POSITIVES
from cxrres.evaluation.seeds import format_mean_sd
from cxrres.util.markdown import md_escape

FEW_MARK = "†"  # after the name of a class with fewer than MIN_POSITIVES positive test images
FEW_NOTE = (
    f"{FEW_MARK} fewer than {MIN_POSITIVES} positive test images: the interval and the paired tests of this class "
    "rest on too few cases to mean much."
)
FEW_P = f"n/a (<{MIN_POSITIVES} pos)"  # a paired p shown for such a class


@dataclass
class Table:
    """A rendered table: header, rows of cell texts, the (row, column) cells to mark bold, and footnotes."""

    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(map(md_escape, self.header)) + " |", "|" + "---|" * len(self.header)]
        for i, row in enumerate(self.rows):
            cells = (f"**{md_escape(c)}**" if (i, j) in self.bold else md_escape(c) for j, c in enumerate(row))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in self.notes)

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>"
            + "".join(
                (f"<td><b>{html.escape(c)}</b></td>" if (i, j) in self.bold else f"<td>{html.escape(c)}</td>")
                for j, c in enumerate(row)
            )
            + "</tr>"
            for i, row in enumerate(self.rows)
        )
        notes = "".join(f"<p><small>{html.escape(note)}</small></p>" for note in self.notes)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"

    def to_latex(self) -> str:
        def esc(text: str) -> str:
            return str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("–", "--")

        lines = [
            r"\begin{tabular}{l" + "c" * (len(self.header) - 1) + "}",
            r"\toprule",
            " & ".join(map(esc, self.header)) + r" \\",
            r"\midrule",
        ]
        for i, row in enumerate(self.rows):
            lines.append(
                " & ".join((r"\textbf{%s}" % esc(c)) if (i, j) in self.bold else esc(c) for j, c in enumerate(row))
                + r" \\"
            )
        lines += [r"\bottomrule", r"\end{tabular}"] + [r"\par{\footnotesize %s}" % esc(note) for note in self.notes]
        return "\n".join(lines) + "\n"


def wide(long: pd.DataFrame, value: str, row: str = "class", column: str = "heading") -> pd.DataFrame:
    """Long table -> one row per `row` (in first-seen order) and one column per `column` (in first-seen order)."""
    table = long.pivot(index=row, columns=column, values=value)
    return table.loc[list(dict.fromkeys(long[row])), list(dict.fromkeys(long[column]))]


def best_mask(values: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """True where a cell equals its row's best value at the printed precision (3 decimals; ties all marked)."""
    rounded = values.round(3)
    best = rounded.max(axis=1) if higher_is_better else rounded.min(axis=1)
    return rounded.eq(best, axis=0) & rounded.notna()


def _cell(value: float, low: float, high: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    if low is None or math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def marked(name: str, few: set[str] | frozenset[str]) -> str:
    """A class's name as the tables show it: with FEW_MARK when it has fewer than MIN_POSITIVES positives."""
    return f"{name} {FEW_MARK}" if name in few else str(name)


def comparison_table(
    long: pd.DataFrame,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    first: str = "Class",
    higher_is_better: bool = True,
    few: set[str] | frozenset[str] = frozenset(),
) -> Table:
    """Rows: classes (then mean); columns: runs; cells `value [low, high]`; the best per row bold; the classes in `few`
    (fewer than MIN_POSITIVES positives) marked, with a footnote."""
    values = wide(long, value)
    lows = wide(long, low) if low else values * np.nan
    highs = wide(long, high) if high else values * np.nan
    best = best_mask(values, higher_is_better)
    rows, bold = [], set()
    for i, r in enumerate(values.index):
        rows.append(
            [marked(r, few)] + [_cell(values.loc[r, c], lows.loc[r, c], highs.loc[r, c]) for c in values.columns]
        )
        bold |= {(i, j + 1) for j, c in enumerate(values.columns) if best.loc[r, c]}
    return Table([first, *map(str, values.columns)], rows, bold, [FEW_NOTE] if few & set(values.index) else [])


def markdown_table(
    long: pd.DataFrame,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    first: str = "Class",
    higher_is_better: bool = True,
    few: set[str] | frozenset[str] = frozenset(),
) -> str:
    """A Markdown table (rows: classes, columns: runs) with the best value per row in bold and `few` marked."""
    return comparison_table(long, value, low, high, first, higher_is_better, few).to_markdown()


def latex_table(
    long: pd.DataFrame,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    first: str = "Class",
    higher_is_better: bool = True,
    few: set[str] | frozenset[str] = frozenset(),
) -> str:
    """A LaTeX tabular (booktabs) with the best value per row in bold and `few` marked."""
    return comparison_table(long, value, low, high, first, higher_is_better, few).to_latex()


def csv_table(
    long: pd.DataFrame,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    higher_is_better: bool = True,
    few: set[str] | frozenset[str] | None = None,
) -> pd.DataFrame:
    """Wide CSV frame: the row name, per run `<run>`, `<run> ci_low`, `<run> ci_high`, and `best` (the best run(s));
    with `few` given, a last column `few_positives` (True for the classes in it)."""
    values = wide(long, value)
    best = best_mask(values, higher_is_better)
    out = pd.DataFrame({"class": values.index})
    for c in values.columns:
        out[c] = values[c].to_numpy()
        if low:
            out[f"{c} {low}"] = wide(long, low)[c].to_numpy()
            out[f"{c} {high}"] = wide(long, high)[c].to_numpy()
    out["best"] = [" / ".join(values.columns[best.loc[r]]) for r in values.index]
    if few is not None:
        out["few_positives"] = [r in few for r in values.index]
    return out


def seed_table(
    summary: pd.DataFrame,
    first: str = "Class",
    higher_is_better: bool = True,
    digits: int = 3,
    few: set[str] | frozenset[str] = frozenset(),
) -> Table:
    """Rows: classes; columns: groups (`<group> (n = k)` when every class has k seeds); cells `mean ± sd` over seeds
    (`(n = j)` added where a class has fewer seeds); the best mean per row bold; the classes in `few` marked, with a
    footnote. `summary`: `compare.summarise_seeds`."""
    means, sds, ns = (wide(summary, v, column="group") for v in ("mean", "sd", "n"))
    best = best_mask(means, higher_is_better)
    header = [first]
    for g in means.columns:
        counts = set(ns[g].dropna().astype(int))
        header.append(f"{g} (n = {counts.pop()})" if len(counts) == 1 else str(g))
    rows, bold = [], set()
    for i, r in enumerate(means.index):
        cells = [marked(r, few)]
        for g in means.columns:
            n = 0 if math.isnan(ns.loc[r, g]) else int(ns.loc[r, g])
            text = format_mean_sd(means.loc[r, g], sds.loc[r, g], n, digits)
            full = set(ns[g].dropna().astype(int))
            cells.append(text + (f" (n = {n})" if len(full) > 1 and text != "–" else ""))
        rows.append(cells)
        bold |= {(i, j + 1) for j, g in enumerate(means.columns) if best.loc[r, g]}
    return Table(header, rows, bold, [FEW_NOTE] if few & set(means.index) else [])


@dataclass
class Block:
    """One piece of a report section: text, a table, or a figure (PNG path)."""

    text: str | None = None
    table: Table | None = None
    image: Path | None = None
    caption: str = ""
