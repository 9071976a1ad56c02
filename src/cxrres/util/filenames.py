"""File names built from data (class names, image names): one rule, so that a class called "Nodule/Mass" or an image
called "../x" writes a file inside the folder it belongs in, and two different texts never share a name."""

from __future__ import annotations

import hashlib
import re

#: Characters a name part keeps as they are; every other one becomes '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Longest name part kept before shortening (characters; file systems allow 255 bytes per name).
MAX_CHARS = 100


def short_digest(text: str) -> str:
    """The first 8 hex digits of the SHA-1 of `text` (UTF-8): a stable tag that tells apart texts that read alike."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def safe_filename(text: str) -> str:
    """`text` as one part of a file name: letters, digits, '.', '_' and '-' kept, any other character as '_'.

    When that changes `text` (or it is empty, starts with '.', or is longer than MAX_CHARS), '-' and
    `short_digest(text)` follow the shortened part, so that different texts keep different names ("A/B" ->
    "A_B-<digest>", "A_B" -> "A_B").
    """
    name = _UNSAFE.sub("_", str(text))
    if name == text and name and not name.startswith(".") and len(name) <= MAX_CHARS:
        return name
    name = "_" + name[1:] if name.startswith(".") else name
    return f"{name[:MAX_CHARS]}-{short_digest(str(text))}"
