"""`cxrres export`: a run's best network as ONNX or TorchScript, with a model card beside it.

The exported graph takes uint8 grey images N×R×R (R the run's resolution, N dynamic) and returns N×C probabilities:
the ImageNet normalisation and grey→3 channels happen inside the graph, so a runtime without PyTorch only needs
the training path's decode, bottom/right padding to a square and area resize (`data.images.load_resized`).
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from cxrres import __version__, runs
from cxrres.config import TrainConfig
from cxrres.data.images import IMAGENET_MEAN, IMAGENET_STD
from cxrres.data.images import preprocessing_rules
from cxrres.data.layout import is_phantom
from cxrres.errors import CxrresError
from cxrres.inference.network import SCORING_PRECISION, load_run_model
from cxrres.localization.localize import SCORES
from cxrres.models.registry import at_resolution, display_name
from cxrres.util.parallel import write_text_atomic
from cxrres.util.markdown import md_escape

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
ONNX_OPSET = 17


class ExportWrapper(nn.Module):
    """uint8 (N, R, R) grey -> (N, C) probabilities: /255, ImageNet mean/std, grey to 3 channels, network, sigmoid."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        x = images_uint8.unsqueeze(1).float().div(255.0).expand(-1, 3, -1, -1)
        return torch.sigmoid(self.model((x - self.mean) / self.std))


def export_run(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the run's best network to `out` (written to a temporary name, then renamed) and `out`.md, its model card;
    if the card cannot be written the network is removed again (never one without the other)."""
    if fmt not in FORMATS:
        raise CxrresError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    best = run_dir / runs.CHECKPOINTS / runs.BEST
    if not (run_dir / runs.CONFIG).is_file():
        raise CxrresError(f"{run_dir}: not a run directory (no {runs.CONFIG})")
    if not best.is_file():
        raise CxrresError(f"{best}: missing; finish the run first (rerun its `cxrres train` command)")
    runs.read_status(run_dir)  # a damaged run.json fails here, before anything is written
    model, config, classes = load_run_model(run_dir)
    wrapper = ExportWrapper(at_resolution(model, config.resolution_px).float().eval()).eval()
    example = torch.zeros((2, config.resolution_px, config.resolution_px), dtype=torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporters announce their deprecation
        if fmt == "onnx":
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["image_uint8"],
                output_names=["probabilities"],
                dynamic_axes={"image_uint8": {0: "batch"}, "probabilities": {0: "batch"}},
            )
        else:
            torch.jit.save(torch.jit.trace(wrapper, example), str(tmp))
    tmp.replace(out)
    try:  # the model and its card appear as a pair: no card, no model
        write_text_atomic(out.with_name(out.name + ".md"), model_card(run_dir, config, classes, out, fmt))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def best_runs(study_dir: str | Path) -> list[Path]:
    """Per (arch, resolution, label) of a study, the evaluated run with the highest test mean AUC (the best seed)."""
    best: dict[tuple, tuple[float, Path]] = {}
    for run_dir in sorted((Path(study_dir) / runs.STUDY_RUNS).glob("*")):
        if not (run_dir / runs.AUC).is_file() or not (run_dir / runs.CHECKPOINTS / runs.BEST).is_file():
            continue
        config = runs.read_settings(run_dir)
        table = pd.read_csv(run_dir / runs.AUC).set_index("class")
        key, score = (config.arch, config.resolution_px, config.label or ""), float(table.loc["mean", "auc"])
        if key not in best or score > best[key][0]:
            best[key] = (score, run_dir)
    if not best:
        raise CxrresError(f"{study_dir}: no evaluated run under {runs.STUDY_RUNS}/; run `cxrres study` first")
    return [best[key][1] for key in sorted(best)]


def export_study(study_dir: str | Path, fmt: str, out_dir: str | Path) -> list[Path]:
    """Export the best run per (arch, resolution, label) of a study into `out_dir`, each with its model card."""
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}.get(fmt, "")
    return [export_run(run_dir, fmt, Path(out_dir) / f"{run_dir.name}{suffix}") for run_dir in best_runs(study_dir)]


def run_of_card(text: str, card: Path) -> tuple[Path, str]:
    """(run directory, format) named on a model card's 'Exported by cxrres V from `RUN` as FMT' line."""
    match = re.search(r"^Exported by cxrres \S+ from `(.+)` as (\w+) ", text, re.MULTILINE)
    if not match or match.group(2).lower() not in FORMATS:
        raise CxrresError(f"{card}: not a cxrres model card (no 'Exported by cxrres ... from `RUN` as FORMAT' line)")
    return Path(match.group(1)), match.group(2).lower()


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _number(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(md_escape, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(md_escape, r)) + " |" for r in rows])


def _csv_section(path: Path, missing: str, render: Callable[[pd.DataFrame], str]) -> str:
    """`render` of the CSV at `path`, or the `missing` sentence when the run has not written it."""
    return render(pd.read_csv(path)) if path.is_file() else missing


def _operating_section(run_dir: Path) -> str:
    """The operating-points table of the run (its stored file, or Youden's J chosen on its written validation
    predictions for runs trained before the file was written)."""
    from cxrres.deploy.predict import run_operating_points  # deploy's own module; imported here to keep export light

    try:
        ops = run_operating_points(run_dir)
    except CxrresError as error:
        return f"None: {error}."
    return _table(
        ["Class", "Rule", "Threshold", "Sensitivity", "Specificity"],
        [
            [
                r["class"],
                r["rule"],
                "–" if math.isnan(r["threshold"]) else "%.9g" % r["threshold"],
                _number(r["sensitivity"]),
                _number(r["specificity"]),
            ]
            for _, r in ops.iterrows()
        ],
    )


def _intended_use(record: dict, config: TrainConfig) -> str:
    """What the model is for and what it was trained on: a phantom model says so."""
    common = (
        "It is not a medical device and must not be used for diagnosis; thresholds were chosen on the validation "
        "part of the training data set."
    )
    if record.get("data", {}).get("phantom") or is_phantom(config.data):
        return (
            "A model trained on cxrres's synthetic phantom (generated images with exact labels and boxes, not "
            "radiographs of patients), for testing the study's pipeline and its resolution mechanism. It says nothing "
            "about real chest X-rays. " + common
        )
    return (
        "A research model for studying how training resolution changes what a chest X-ray classifier gets right and "
        "where it looks. Labels of public chest X-ray sets are mined from reports and noisy; performance on other "
        "hospitals, devices, projections (lateral, AP vs PA) or populations is unknown. " + common
    )


def model_card(run_dir: Path, config: TrainConfig, classes: list[str], exported: Path, fmt: str) -> str:
    """The model card (Markdown): data, recipe, weights origin, test AUC with intervals, localization, operating
    points, intended use and limits, the exported file's SHA-256."""
    record = runs.read_config(run_dir)
    data = record.get("data", {})
    images = data.get("images", {})
    status = runs.read_status(run_dir)
    weights = {"imagenet": "torchvision ImageNet weights", "none": "random initialisation"}.get(
        config.weights, f"the file {config.weights}"
    )
    lines = [
        f"# Model card: {display_name(config.arch)}, {config.resolution_px} px, "
        f"{md_escape(', '.join(classes)) if config.label else '14 findings'}",
        "",
        f"Exported by cxrres {__version__} from `{run_dir}` as {fmt.upper()} (`{exported.name}`).",
        "",
        "## Input and output",
        "",
        f"- Input `image_uint8`: uint8, N × {config.resolution_px} × {config.resolution_px}, one grey radiograph per "
        "row, made from the file by these rules (the steps up to the resize are the client's; the graph does the "
        "last):",
        *(f"  - {rule}" for rule in preprocessing_rules()),
        f"- Output `probabilities`: float32, N × {len(classes)}, columns {md_escape(', '.join(classes))}.",
        f"- Scoring precision: float32 without autocast ({SCORING_PRECISION}), the precision of `cxrres predict` and "
        f"of the run's own test predictions: on the same pixels they agree with this file to within 1e-4 (the run "
        f"trained in {config.precision}).",
        "",
        "## Data and training",
        "",
        f"- Data root `{config.data}`, split `{config.split}`: {images.get('train', '?')} train, "
        f"{images.get('val', '?')} validation, {images.get('test', '?')} test images.",
        f"- Recipe: BCE with logits; AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}; LR × "
        f"{config.lr_factor:g} after {config.lr_patience} epochs without validation-loss improvement, stop after "
        f"{config.stop_patience}; batch "
        f"{config.batch_size}; precision {config.precision}; seed {config.seed}. Initial weights: {weights}.",
        f"- Trained {status.epochs} epochs; kept epoch {status.best_epoch} (best validation mean AUC "
        f"{_number(status.best_val_mean_auc)}); device {status.device}.",
        "",
    ]
    lines += [
        "## Test AUC (95 % intervals)",
        "",
        _csv_section(
            run_dir / runs.AUC,
            f"Not evaluated (run `cxrres evaluate {run_dir}`).",
            lambda auc: _table(
                ["Class", "Positives", "AUC", "95 % interval"],
                [
                    [
                        r["class"],
                        "" if pd.isna(r["n_pos"]) else str(int(r["n_pos"])),
                        _number(r["auc"]),
                        f"{_number(r['ci_low'])}–{_number(r['ci_high'])}",
                    ]
                    for _, r in auc.iterrows()
                ],
            ),
        ),
    ]
    lines += [
        "",
        "## Localization (Grad-CAM boxes against the official boxes, IoU ≥ 0.1)",
        "",
        _csv_section(
            run_dir / runs.LOCALIZATION,
            f"Not localized (run `cxrres localize {run_dir}`).",
            lambda loc: _table(
                ["Class", "Boxes", *(c for c in SCORES if c in loc.columns)],
                [
                    [r["class"], str(int(r["n"])), *(_number(r[c]) for c in SCORES if c in loc.columns)]
                    for _, r in loc.iterrows()
                ],
            ),
        ),
    ]
    lines += [
        "",
        "## Operating points (chosen on the validation part when the run was trained)",
        "",
        "A class is called positive when its probability is >= its threshold (probabilities and thresholds "
        "compared as float32). Youden's J on the run's validation predictions (`predictions_val.csv`); "
        "`cxrres predict` uses these same thresholds.",
        "",
        _operating_section(run_dir),
    ]
    lines += [
        "",
        "## Intended use and limits",
        "",
        _intended_use(record, config),
        "",
        "## File",
        "",
        f"- `{exported.name}`: {exported.stat().st_size:,} bytes, SHA-256 `{sha256(exported)}`",
        "",
    ]
    return "\n".join(lines)
