"""The public Python API (docs/api.md): open any supported data set as a torch Dataset, create a network, load a trained
run for your own inference loop. The command line is a client of the same functions; `import cxrres` exposes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrres import runs
from cxrres.config import DATA_SETTINGS as _READ_SETTINGS, TrainConfig
from cxrres.data.torch_dataset import CacheDataset, to_network_input  # noqa: F401  (to_network_input: public, docs/api.md)
from cxrres.data.images import load_resized
from cxrres.errors import CxrresError
from cxrres.inference.network import for_inference, load_run_model, probabilities
from cxrres.models.registry import create_model as _create_model
from cxrres.evaluation.operating import DEFAULT_RULE, OperatingRule, positive_calls, thresholds_for

#: The data settings `open_dataset` takes (the same as `cxrres describe`/`train` flags of those names): how the root is
#: read (`DataOptions`' fields, `config.DATA_SETTINGS`), then which labels of it the dataset gives.
DATA_SETTINGS: tuple[str, ...] = (*_READ_SETTINGS, "uncertain", "class_names", "label", "allow_missing")
PARTS: tuple[str, ...] = ("train", "val", "test")


def open_dataset(
    root: str | Path,
    part: str = "train",
    resolution: int = 224,
    *,
    cache: str | Path | None = None,
    progress: bool = False,
    **settings,
) -> CacheDataset:
    """One part (`train`, `val`, `test`) of any supported data set under `root` at `resolution` px, as a torch Dataset
    of (uint8 image (1, R, R), float32 labels (C,): 1, 0, or -1 where masked out). Its cache is prepared on first use
    (under `cache`, default $CXRRES_CACHE_DIR or ~/.cache/cxrres). `settings`: DATA_SETTINGS (split, uncertain, views,
    skip_bad, ...). `dataset.classes` names the label columns, `dataset.images` the images."""
    from cxrres.inference.rundata import load_run_data

    if part not in PARTS:
        raise CxrresError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    unknown = sorted(set(settings) - set(DATA_SETTINGS))
    if unknown:
        raise CxrresError(f"open_dataset: unknown data setting {unknown[0]!r}; known: {', '.join(DATA_SETTINGS)}")
    config = TrainConfig(
        data=str(Path(root).expanduser().resolve()),
        resolution_px=int(resolution),
        cache=None if cache is None else str(cache),
        progress=progress,
        weights="none",
        **settings,
    )
    return load_run_data(config).parts[part]


def create_model(arch: str = "densenet121", num_classes: int = 14, weights: str = "none") -> nn.Module:
    """A network by name (`densenet121`, `resnet34`, ...) with a `num_classes`-way head; `weights`: `none`, `imagenet`
    (torchvision's file from the local torch hub cache; one line saying where to put it when absent) or a local file
    (loaded with weights_only=True)."""
    return _create_model(arch, num_classes, weights)


@dataclass
class LoadedRun:
    """A trained run ready for inference: its network (eval mode, float32), classes, resolution (px), settings, and
    the thresholds of its operating points (float32; NaN: no call for that class)."""

    model: nn.Module
    classes: list[str]
    resolution_px: int
    config: TrainConfig
    thresholds: np.ndarray
    device: torch.device

    def load_image(self, path: str | Path) -> np.ndarray:
        """One file (PNG, JPEG, DICOM) as the network's uint8 input (R, R): cxrres's decode rules, bottom/right padding
        to a square, area resize (the training path exactly)."""
        return load_resized(path, (self.resolution_px,))[0][self.resolution_px]

    def probabilities(self, images_uint8: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, C) float32 probabilities of uint8 images (B, R, R) or (B, 1, R, R), in cxrres's scoring precision."""
        batch = torch.as_tensor(np.asarray(images_uint8), dtype=torch.uint8)
        batch = batch[:, None] if batch.ndim == 3 else batch
        return probabilities(self.model, batch, self.config, self.device).numpy()

    def calls(self, probs: np.ndarray) -> np.ndarray:
        """(B, C): 1.0 where probability >= the class's threshold, 0.0 below, NaN for a class without a threshold."""
        return positive_calls(probs, self.thresholds)

    def predict(self, paths: list[str | Path]) -> pd.DataFrame:
        """One row per file: path, a probability and a `positive_<class>` call per class — the table `cxrres predict`
        writes (`deploy.predict.predictions_frame`)."""
        from cxrres.deploy.predict import predictions_frame

        probs = self.probabilities(np.stack([self.load_image(p) for p in paths]))
        return predictions_frame(paths, self.classes, probs, self.thresholds)


def load_run(run_dir: str | Path, rule: str | OperatingRule = DEFAULT_RULE, device: str | None = None) -> LoadedRun:
    """A trained run (its best checkpoint, loaded with weights_only=True) with its preprocessing and the thresholds of
    `rule` (the run's stored Youden points by default; another rule is chosen on its written validation predictions)."""
    from cxrres.deploy.predict import run_operating_points

    run_dir = Path(run_dir)
    rule = OperatingRule.parse(rule) if isinstance(rule, str) else rule
    best = run_dir / runs.CHECKPOINTS / runs.BEST
    runs.read_config(run_dir)  # one line when this is not a run directory
    if not best.is_file():
        raise CxrresError(f"{best}: missing; the run has not finished a validated epoch")
    model, config, classes = load_run_model(run_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = for_inference(model, dataclasses.replace(config, channels_last=False), dev)
    thresholds = thresholds_for(
        run_operating_points(run_dir, rule), classes, rule, str(run_dir / runs.OPERATING_POINTS)
    )
    return LoadedRun(model, classes, int(config.resolution_px), config, thresholds, dev)
