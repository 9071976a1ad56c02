"""Data strings in Markdown output: escaped so that they read as the text they are (a class named `<script>...` or
`a|b` is shown as such, not run as HTML nor split into table cells), as html.escape does for the HTML report."""

from __future__ import annotations

import re

#: Characters that start Markdown (or GitHub Markdown) syntax anywhere in a line: the cell separator, emphasis, code,
#: strike-through, a link's `](`; `_` only at a word's edge (inside a word it is literal, so `Pleural_Thickening` stays
#: as written). A bracket alone, `>` and a `<` that cannot open a tag (`<0.001`, `(<5 pos)`) are literal already.
_SPECIAL = re.compile(r"[\\`*|~]|\](?=\()|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
#: A `<` that could open an HTML tag, comment or declaration.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def md_escape(text: object) -> str:
    """`text` as literal Markdown: syntax characters backslash-escaped, `&` and a tag-opening `<` as entities, line
    breaks as spaces; text without syntax characters (`0.451 [0.323, 0.586]`, `<0.001`) is left as it reads."""
    flat = " ".join(str(text).replace("&", "&amp;").splitlines())
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), _TAG_OPEN.sub("&lt;", flat))


def md_prose(text: str) -> str:
    """Authored Markdown prose that carries data strings: `<`, `>` and `&` as entities outside `code spans` (where
    HTML is not interpreted), so no data string becomes HTML; the prose's own code spans and emphasis are kept."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: no code span to keep
        pieces = [text]
    return "`".join(
        p if i % 2 else p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(pieces)
    )
