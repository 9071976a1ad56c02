"""`create_model(arch, num_classes, weights)`: torchvision's DenseNet-121 / ResNet-34 and timm's ConvNeXt,
EfficientNet and ViT models (`timm:NAME`, see `cxrres.models.timm_backbones`) with ImageNet, local or foreign weights.

Every file is read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, never code.
Foreign checkpoints (CheXNet's ``module.densenet121.features...`` with ``norm.1``-style names, Lightning's
``model.``-prefixed ``state_dict``, a bare state dict) are brought to torchvision's names by :func:`remap_keys`.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a network is built or weights are read, so the CLI starts without it
    import torch
    from torch import nn

from cxrres.models.spec import ArchSpec, WeightsError
from cxrres.errors import CxrresError


def _densenet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DenseNet's last block after its final ReLU (torchvision applies that ReLU in place inside `forward`)."""
    import torch.nn.functional as F

    return F.relu(model.features(x))


def _densenet_head(model: nn.Module, a: torch.Tensor) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    return model.classifier(torch.flatten(F.adaptive_avg_pool2d(a, (1, 1)), 1))


def _resnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet's layer4 output (each BasicBlock ends with its ReLU)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def _resnet_head(model: nn.Module, a: torch.Tensor) -> torch.Tensor:
    import torch

    return model.fc(torch.flatten(model.avgpool(a), 1))


#: The recipe's architectures, built by torchvision (`timm:NAME` names any model of a family in
#: `cxrres.models.timm_backbones.FAMILIES`).
ARCHS: dict[str, ArchSpec] = {
    "densenet121": ArchSpec(
        "DenseNet-121",
        "torchvision.models.DenseNet",
        "classifier",
        _densenet_features,
        _densenet_head,
        builder_name="densenet121",
        weights_name="DenseNet121_Weights",
    ),
    "resnet34": ArchSpec(
        "ResNet-34",
        "torchvision.models.ResNet",
        "fc",
        _resnet_features,
        _resnet_head,
        builder_name="resnet34",
        weights_name="ResNet34_Weights",
    ),
}
TIMM_PREFIX = "timm:"


def is_timm(arch: str) -> bool:
    """Whether `arch` names a timm model (`timm:NAME`)."""
    return arch.startswith(TIMM_PREFIX)


def arch_spec(arch: str) -> ArchSpec:
    """The ArchSpec of a built-in architecture or of `timm:NAME` (its family's, with the model's head name);
    CxrresError naming the choices for anything else."""
    if is_timm(arch):
        from cxrres.models.timm_backbones import timm_spec

        return timm_spec(arch[len(TIMM_PREFIX) :])
    if arch not in ARCHS:
        raise CxrresError(
            f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)} or timm:NAME "
            "(a timm ConvNeXt, EfficientNet or ViT, e.g. timm:convnext_tiny)"
        )
    return ARCHS[arch]


def check_arch(arch: str, resolution_px: int | None = None) -> None:
    """CxrresError (one line) for an unknown architecture, or a resolution its network cannot take."""
    arch_spec(arch)
    if is_timm(arch) and resolution_px is not None:
        from cxrres.models.timm_backbones import check_resolution

        check_resolution(arch[len(TIMM_PREFIX) :], resolution_px)


def display_name(arch: str) -> str:
    """'DenseNet-121' for 'densenet121', the timm name for 'timm:NAME'; the key itself for an unknown architecture."""
    if is_timm(arch):
        return arch[len(TIMM_PREFIX) :]
    return ARCHS[arch].display_name if arch in ARCHS else arch


def spec_of(model: nn.Module) -> ArchSpec:
    """The ArchSpec of a network built by `create_model`; CxrresError for any other network."""
    for spec in ARCHS.values():
        if isinstance(model, spec.model_type):
            return spec
    if type(model).__module__.startswith("timm."):
        from cxrres.models.timm_backbones import spec_of_timm

        return spec_of_timm(model)
    raise CxrresError(
        f"no features/head split for {type(model).__name__}; supported: "
        f"{', '.join(s.model_type.__name__ for s in ARCHS.values())} and timm's ConvNeXt, EfficientNet, "
        "VisionTransformer"
    )


def at_resolution(model: nn.Module, resolution_px: int) -> nn.Module:
    """`model` as a graph for `resolution_px` inputs only (same outputs there), for export: ViTs get their position
    embeddings resampled once instead of at every call (the antialiased bicubic resampling has no ONNX operator)."""
    return spec_of(model).at_resolution(model, resolution_px)


#: Old torchvision / CheXNet DenseNet names `denselayer1.norm.1.weight` -> `denselayer1.norm1.weight`.
_OLD_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
#: Wrappers seen in the wild in front of torchvision's names (DataParallel, CheXNet's class, Lightning modules).
_PREFIXES: tuple[str, ...] = ("module.", "densenet121.", "resnet34.", "model.", "net.", "backbone.")


def remap_keys(state_dict: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    """Foreign key names -> torchvision's: strip wrapper prefixes, `norm.1` -> `norm1`, `head.0.` -> `head.`."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        match = _OLD_DENSE_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        key = re.sub(rf"^{head}\.0\.", f"{head}.", key)  # CheXNet: classifier = Sequential(Linear, Sigmoid)
        out[key] = value
    return out


def safe_torch_load(path: Path) -> object:
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only; WeightsError (one line)
    when the file holds other Python objects. Other read errors (truncated, not a PyTorch file) propagate."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unsupported content"
        raise WeightsError(
            f"{path}: refused to load: the file holds Python objects other than tensors "
            f"(torch.load weights_only=True): {first}"
        ) from None


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a local file (a bare state dict, or a checkpoint holding `state_dict`/`model`), safely."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":  # tensors only by construction (Hugging Face's format)
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError, OSError, ValueError
            raise WeightsError(
                f"{path}: not a readable safetensors file "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
    try:
        obj = safe_torch_load(path)
    except (RuntimeError, EOFError, OSError) as error:
        raise WeightsError(f"{path}: not a readable PyTorch file ({str(error).splitlines()[0]})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: no state dict of tensors found (keys: {_preview(obj.keys() if isinstance(obj, dict) else [])})"
        )
    return obj


def imagenet_file(arch: str) -> Path:
    """Where torchvision keeps `arch`'s ImageNet weights: $TORCH_HOME/hub/checkpoints/<file> (see torch.hub.get_dir)."""
    import torch

    url = arch_spec(arch).imagenet.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_imagenet(arch: str, progress: bool = True) -> Path:
    """Path of `arch`'s ImageNet weights, downloading them once into torch's hub cache; offline, say what to do."""
    import torch

    target = imagenet_file(arch)
    if target.is_file():
        return target
    url = ARCHS[arch].imagenet.url
    target.parent.mkdir(parents=True, exist_ok=True)
    hash_prefix = re.search(r"-([a-f0-9]+)\.", target.name)
    try:
        torch.hub.download_url_to_file(
            url, str(target), hash_prefix.group(1) if hash_prefix else None, progress=progress
        )
    except Exception as error:  # network errors come in many types (URLError, socket, SSL, HTTP)
        raise WeightsError(
            f"{arch}: ImageNet weights are not at {target} and downloading {url} failed "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}); "
            f"download that file on a machine with network access and place it at {target} "
            f"(or set TORCH_HOME), or pass --weights PATH or --weights none"
        ) from None
    return target


def _preview(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more if keys else "none"


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], head: str, source: str) -> list[str]:
    """Load a remapped state dict; a head of another shape (or none) stays freshly initialised. Returns skipped keys.

    Any other missing or unexpected key is an error that names them.
    """
    state_dict = remap_keys(state_dict, head)
    own = model.state_dict()
    skipped = [k for k in state_dict if k.startswith(f"{head}.") and k in own and state_dict[k].shape != own[k].shape]
    for key in skipped:
        del state_dict[key]
    # files from before PyTorch 0.4 (CheXNet's) have no BatchNorm `num_batches_tracked`; a missing head is
    # re-initialised
    missing = [
        k for k in own if k not in state_dict and not k.startswith(f"{head}.") and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise WeightsError(
            f"{source}: weights do not fit the model: missing {len(missing)} keys ({_preview(missing)}); "
            f"unexpected {len(unexpected)} keys ({_preview(unexpected)})"
        )
    shape_errors = [k for k in state_dict if state_dict[k].shape != own[k].shape]
    if shape_errors:
        k = shape_errors[0]
        raise WeightsError(
            f"{source}: {len(shape_errors)} tensors have other shapes, e.g. {k}: "
            f"{tuple(state_dict[k].shape)} in the file vs {tuple(own[k].shape)} in the model"
        )
    own.update(state_dict)
    model.load_state_dict(own)
    return skipped


def create_model(
    arch: str, num_classes: int, weights: str | Path | None = "imagenet", progress: bool = True
) -> nn.Module:
    """A torchvision `arch` or a timm `timm:NAME` with a `num_classes`-way linear head; weights 'imagenet', 'none'/None,
    or a file path.

    With ImageNet weights (or a checkpoint with another number of classes) the backbone is loaded and the head is
    newly initialised; a checkpoint with a matching head (e.g. CheXNet's 14 classes) loads completely.
    """
    spec = arch_spec(arch)
    if num_classes < 1:
        raise CxrresError(f"num_classes must be >= 1, got {num_classes}")
    if is_timm(arch):
        from cxrres.models.timm_backbones import build_timm, timm_imagenet_file

        name = arch[len(TIMM_PREFIX) :]
        model = build_timm(name, num_classes)

        def imagenet() -> Path:
            return timm_imagenet_file(name)

    else:
        model = spec.builder(weights=None, num_classes=num_classes)

        def imagenet() -> Path:
            return fetch_imagenet(arch, progress)

    if weights is None or str(weights) == "none":
        return model
    path = imagenet() if str(weights) == "imagenet" else Path(weights)
    load_into(model, load_weights_file(path), spec.head, str(path))
    return model


#: Batch sizes of the study's recipe by resolution (px); 16 for every other resolution.
RECIPE_BATCH_SIZE: dict[int, int] = {64: 64, 1024: 12}


def recipe_batch_size(resolution_px: int) -> int:
    """The study's batch size at `resolution_px`: 64 at 64 px, 12 at 1024 px, 16 otherwise."""
    return RECIPE_BATCH_SIZE.get(resolution_px, 16)


def default_batch_size(arch: str, resolution_px: int) -> int:
    """The recipe's batch for densenet121/resnet34; for a timm model the largest batch up to the recipe's whose fitted
    training memory (benchmarks/RESULTS.md) stays within DenseNet-121's at the recipe's batch."""
    if not is_timm(arch):
        return recipe_batch_size(resolution_px)
    from cxrres.models.timm_backbones import default_batch_size as timm_batch

    return timm_batch(arch.split(":", 1)[1], resolution_px, recipe_batch_size(resolution_px))
