"""The report's two renderings: Markdown (report.md) and self-contained HTML (report.html, figures as data URIs)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from cxrres.report.tables import Block  # noqa: E402
from cxrres.util.markdown import md_escape, md_prose  # noqa: E402


def to_markdown(title: str, sections: list[tuple[str, list[Block]]], base: Path) -> str:
    out = [f"# {md_prose(title)}\n"]
    for heading, blocks in sections:
        out.append(f"## {md_prose(heading)}\n")
        for b in blocks:
            if b.text:
                out.append(md_prose(b.text) + "\n")
            if b.table:
                out.append(b.table.to_markdown())
            if b.image:
                out.append(f"![{md_escape(b.caption)}]({b.image.relative_to(base).as_posix()})\n")
    return "\n".join(out)


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\n"
    "table{border-collapse:collapse;margin:.8em 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\n"
    "th:first-child,td:first-child{text-align:left}thead{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}\n"
    "figcaption{font-size:12px;color:#555;margin-bottom:1.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"
    "code{background:#f3f3f3}"
)


def to_html(title: str, sections: list[tuple[str, list[Block]]]) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for b in blocks:
            if b.text:
                parts.append(f"<p>{html.escape(b.text).replace('`', '')}</p>")
            if b.table:
                parts.append(b.table.to_html())
            if b.image:
                data = base64.b64encode(b.image.read_bytes()).decode()
                parts.append(
                    f"<figure><img alt='{html.escape(b.caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)
