"""How a run is localized, one home for the defaults of `cxrres localize`, `localize_run` and a study's `localize:`
section, and the check of that section at load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


from cxrres.localization.saliency import METHODS
from cxrres.errors import DataFormatError


@dataclass(frozen=True)
class LocalizeSettings:
    """How a run is localized (`cxrres localize`, a study's `localize:`): CAM method, the map threshold (of the min-max
    normalised map, 0-1), the IoU of a positive detection, and example figures per class."""

    method: str = "gradcam"
    threshold: float = 0.5
    iou: float = 0.1
    examples: int = 3


def localize_settings(mapping: Any, where: str | Path) -> LocalizeSettings:
    """LocalizeSettings from a study file's `localize:` mapping, every key and value checked: an unknown key, a wrong
    type, a CAM method not in `saliency.METHODS` or a value out of range is one DataFormatError naming `where`, before
    anything trains."""
    methods = tuple(METHODS)
    path = Path(where)
    if mapping is None:
        return LocalizeSettings()
    if not isinstance(mapping, dict):
        raise DataFormatError(path, "`localize:` must be a mapping of setting: value")
    known = {f.name: f.type for f in fields(LocalizeSettings)}
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise DataFormatError(path, f"unknown localize setting {unknown[0]!r} (known: {', '.join(known)})")
    values = {**dataclasses.asdict(LocalizeSettings()), **mapping}
    if values["method"] not in methods:
        raise DataFormatError(path, f"localize: unknown method {values['method']!r}; choose from {', '.join(methods)}")
    for name, low, high in (("threshold", 0.0, 1.0), ("iou", 0.0, 1.0)):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
            raise DataFormatError(path, f"localize: {name} must be a number in ({low:g}, {high:g}], not {value!r}")
    examples = values["examples"]
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
        raise DataFormatError(path, f"localize: examples must be a whole number >= 0, not {examples!r}")
    return LocalizeSettings(str(values["method"]), float(values["threshold"]), float(values["iou"]), int(examples))
