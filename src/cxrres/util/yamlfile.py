"""Settings files: one YAML mapping, read safely, every key known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cxrres.errors import CxrresError, DataFormatError


def read_settings_yaml(path: str | Path, known: set[str], what: str = "setting") -> dict[str, Any]:
    """A YAML mapping of settings (safe loading); a non-mapping or an unknown key is an error naming the file."""
    path = Path(path)
    try:
        payload = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CxrresError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise DataFormatError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    payload = payload or {}
    if not isinstance(payload, dict):
        raise DataFormatError(path, "expected a mapping of setting: value")
    unknown = sorted(set(payload) - known)
    if unknown:
        raise DataFormatError(path, f"unknown {what} {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return payload
