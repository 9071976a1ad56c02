"""cxrres: the chest X-ray resolution study (Wollek et al., 2023) on ChestX-ray14, end to end.

Public API (docs/api.md): `open_dataset`, `create_model`, `load_run` (and `LoadedRun`). They are loaded on first use, so
`import cxrres` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["LoadedRun", "__version__", "create_model", "load_run", "open_dataset"]


def __getattr__(name: str) -> Any:
    """The public API functions, imported from `cxrres.api` when first asked for."""
    if name in ("open_dataset", "create_model", "load_run", "LoadedRun"):
        return getattr(importlib.import_module("cxrres.api"), name)
    raise AttributeError(f"module 'cxrres' has no attribute {name!r}")
