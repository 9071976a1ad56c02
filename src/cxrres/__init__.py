"""cxrres: the chest X-ray resolution study (Wollek et al., 2023) on ChestX-ray14, end to end.

Public API (docs/api.md): `open_dataset`, `create_model`, `load_run` (and `LoadedRun`), `to_network_input`,
`DATA_SETTINGS`. They are loaded on first use, so
`import cxrres` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["DATA_SETTINGS", "LoadedRun", "__version__", "create_model", "load_run", "open_dataset", "to_network_input"]
_API = ("open_dataset", "create_model", "load_run", "LoadedRun", "to_network_input", "DATA_SETTINGS")


def __getattr__(name: str) -> Any:
    """The public API functions, imported from `cxrres.api` when first asked for."""
    if name in _API:
        return getattr(importlib.import_module("cxrres.api"), name)
    raise AttributeError(f"module 'cxrres' has no attribute {name!r}")
