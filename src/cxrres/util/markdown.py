"""Data strings in Markdown output: escaped so that they read as the text they are (a class named `<script>...` or
`a|b` is shown as such, not run as HTML nor split into table cells), as html.escape does for the HTML report."""

from __future__ import annotations

import re

#: Characters that start Markdown (or GitHub Markdown) syntax anywhere in a line; `_` only at a word's edge (inside a
#: word it is literal, so `Pleural_Thickening` stays as written).
_SPECIAL = re.compile(r"[\\`*\[\]<>|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_escape(text: object) -> str:
    """`text` as literal Markdown: syntax characters backslash-escaped, `&` as `&amp;`, line breaks as spaces."""
    flat = " ".join(str(text).replace("&", "&amp;").splitlines())
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), flat)


def md_prose(text: str) -> str:
    """Authored Markdown prose that carries data strings: `<`, `>` and `&` as entities outside `code spans` (where
    HTML is not interpreted), so no data string becomes HTML; the prose's own code spans and emphasis are kept."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: no code span to keep
        pieces = [text]
    return "`".join(
        p if i % 2 else p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(pieces)
    )
