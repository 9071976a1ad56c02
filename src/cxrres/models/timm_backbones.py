"""timm backbones by name (`--arch timm:NAME`): ConvNeXt, EfficientNet and ViT, each family registered once.

A family is an `ArchSpec` (display name, network class, features/head split through timm's own `forward_features` /
`forward_head`, how the features become a map grid, input pixels per map cell); a model's head name comes from its
`pretrained_cfg` (`classifier`). ViTs are created with `dynamic_img_size=True`: timm interpolates the position
embeddings to the input's patch grid, so one network takes any resolution that is a multiple of its patch size.

ImageNet weights are never fetched here: `timm_imagenet_file` looks for timm's file in the local Hugging Face cache
and in torch's hub cache, and otherwise names the file and where to put it.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

from cxrres.errors import CxrresError
from cxrres.models.spec import ArchSpec, WeightsError


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's `forward_features`: ConvNeXt's last stage, EfficientNet's head convolution after its BN + SiLU."""
    return model.forward_features(x)


def _head(model: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """timm's `forward_head`: pooling (and ConvNeXt's LayerNorm), then the classifier."""
    return model.forward_head(a)


def _vit_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) tokens entering the last transformer block: patch embedding, position embedding (interpolated to the
    input's grid), prefix tokens, every block but the last. Behind the last block the patch tokens no longer reach the
    class token (the final norm is per token), so a map taken there would have no gradient."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    for block in model.blocks[:-1]:
        x = block(x)
    return x


def _vit_head(model: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The last block, the final norm and timm's `forward_head` (class-token or average pooling, classifier)."""
    return model.forward_head(model.norm(model.blocks[-1](a)))


def _vit_grid(model: nn.Module, a: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """(B, N, D) tokens -> (B, D, h, w) patch grid: the class token and any register tokens (`num_prefix_tokens`)
    dropped, the rest in row-major patch order."""
    h, w = (side // p for side, p in zip(input_hw, model.patch_embed.patch_size))
    patches = a[:, model.num_prefix_tokens :, :]
    if patches.shape[1] != h * w:
        raise CxrresError(
            f"{patches.shape[1]} patch tokens do not form the {h} x {w} grid of a "
            f"{input_hw[0]} x {input_hw[1]} px input"
        )
    return patches.reshape(a.shape[0], h, w, a.shape[2]).permute(0, 3, 1, 2)


def _vit_at_resolution(model: nn.Module, resolution_px: int) -> nn.Module:
    """A fixed-size copy of a dynamic-size ViT for `resolution_px` inputs: timm's `set_input_size` resamples the
    position embeddings with the function (and arguments) the dynamic forward pass uses at every call, loaded into a
    network created at `img_size=resolution_px` without `dynamic_img_size`. Same outputs at that resolution."""
    import copy

    import timm

    source = copy.deepcopy(model).cpu()
    source.set_input_size(img_size=(resolution_px, resolution_px))
    fixed = timm.create_model(
        model.pretrained_cfg["architecture"], pretrained=False, img_size=resolution_px, num_classes=model.num_classes
    )
    fixed.load_state_dict(source.state_dict())
    return fixed.to(next(model.parameters()).device).train(model.training)


#: timm's model module -> the family's spec (head and stride are refined per model by `timm_spec`).
FAMILIES: dict[str, ArchSpec] = {
    "convnext": ArchSpec("ConvNeXt", "timm.models.convnext.ConvNeXt", "head.fc", _features, _head, stride_px=32),
    "efficientnet": ArchSpec(
        "EfficientNet", "timm.models.efficientnet.EfficientNet", "classifier", _features, _head, stride_px=32
    ),
    "vision_transformer": ArchSpec(
        "ViT",
        "timm.models.vision_transformer.VisionTransformer",
        "head",
        _vit_features,
        _vit_head,
        to_grid=_vit_grid,
        stride_px=16,
        create_kwargs=(("dynamic_img_size", True),),
        at_resolution=_vit_at_resolution,
    ),
}

#: Training memory per image, MiB, as a + b (R / 64 px)^2 for each family (and the recipe's DenseNet-121), fitted to
#: peaks measured on the CPU at 64 and 128 px by `python -m benchmarks.arch_memory` (benchmarks/RESULTS.md).
MEMORY_MIB: dict[str, tuple[float, float]] = {
    "DenseNet-121": (-2.03, 13.10),
    "ConvNeXt": (-2.46, 9.72),
    "EfficientNet": (0.33, 9.50),
    "ViT": (-0.68, 4.10),
}  # measured with convnext_tiny, efficientnet_b0 and vit_small_patch16_224; larger members of a family need more


def _family(name: str) -> ArchSpec:
    """The family spec of a timm model name (with or without a pretrained tag); one-line CxrresError otherwise."""
    import timm

    base = timm.models.split_model_name_tag(name)[0]
    if not timm.models.is_model(base):
        raise CxrresError(
            f"unknown timm model {name!r} (timm {timm.__version__}); list them with "
            f"python -c \"import timm; print(timm.list_models('convnext*'))\""
        )
    module = timm.models.model_entrypoint(base).__module__.rsplit(".", 1)[-1]
    if module not in FAMILIES:
        raise CxrresError(
            f"timm model {name!r} is a {module} network; supported families: "
            f"{', '.join(f'{s.display_name} ({m})' for m, s in FAMILIES.items())}"
        )
    return FAMILIES[module]


def _patch_size(name: str) -> int:
    """A ViT's patch side from its name (vit_small_patch16_224 -> 16), else by building it on the meta device."""
    match = re.search(r"patch(\d+)", name)
    if match:
        return int(match.group(1))
    import timm
    import torch

    with torch.device("meta"):
        return int(timm.create_model(name, pretrained=False, dynamic_img_size=True).patch_embed.patch_size[0])


def timm_spec(name: str) -> ArchSpec:
    """The spec of timm model `name`: its family's, with the model's classifier name and (ViT) its patch size."""
    import timm

    spec = _family(name)
    cfg = timm.models.get_pretrained_cfg(name)
    head = (cfg.classifier if cfg is not None and isinstance(cfg.classifier, str) else None) or spec.head
    stride = _patch_size(name) if spec.to_grid is _vit_grid else spec.stride_px
    return replace(spec, display_name=name, head=head, stride_px=stride)


def spec_of_timm(model: nn.Module) -> ArchSpec:
    """The spec of a timm network built by `build_timm`; CxrresError for other timm networks."""
    for spec in FAMILIES.values():
        if isinstance(model, spec.model_type):
            cfg = getattr(model, "pretrained_cfg", None) or {}
            return replace(spec, head=cfg.get("classifier") or spec.head)
    raise CxrresError(
        f"no features/head split for timm's {type(model).__name__}; supported: "
        f"{', '.join(s.model_type.__name__ for s in FAMILIES.values())}"
    )


def build_timm(name: str, num_classes: int) -> nn.Module:
    """timm model `name` with a `num_classes`-way head and random weights (the caller loads any)."""
    import timm

    spec = _family(name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **dict(spec.create_kwargs))


def min_resolution(name: str) -> int:
    """Smallest input side (px): two patches a side for a ViT (a 2 x 2 grid, 32 px for ViT/16); 32 px (a 1 x 1 map,
    as the recipe's networks have there) for ConvNeXt and EfficientNet."""
    spec = timm_spec(name)
    return 2 * spec.stride_px if spec.to_grid is _vit_grid else 32


def check_resolution(name: str, resolution_px: int) -> None:
    """One-line CxrresError when timm model `name` cannot take `resolution_px` (ViT: a multiple of its patch size,
    at least two patches a side; CNNs: at least 32 px)."""
    spec = timm_spec(name)
    low = min_resolution(name)
    if resolution_px < low:
        raise CxrresError(
            f"timm:{name}: resolution {resolution_px} px is below its minimum of {low} px "
            f"(a {'2 x 2 patch grid' if spec.to_grid is _vit_grid else '1 x 1 feature map'})"
        )
    if spec.to_grid is _vit_grid and resolution_px % spec.stride_px:
        raise CxrresError(
            f"timm:{name}: resolution {resolution_px} px is not a multiple of its {spec.stride_px}-px "
            f"patches; use {resolution_px // spec.stride_px * spec.stride_px} or "
            f"{(resolution_px // spec.stride_px + 1) * spec.stride_px} px"
        )


def memory_per_image_mib(family: str, resolution_px: int) -> float:
    """Fitted training memory per image (MiB) of `family` at `resolution_px` (MEMORY_MIB)."""
    a, b = MEMORY_MIB[family]
    return max(a + b * (resolution_px / 64) ** 2, 1e-3)


def default_batch_size(name: str, resolution_px: int, recipe: int) -> int:
    """The batch of timm model `name` at `resolution_px` that needs the memory of the recipe's DenseNet-121 batch
    (`recipe` images) at that resolution, at most `recipe` (the study's batch sizes stay the upper bound)."""
    family = _family(name).display_name
    budget = recipe * memory_per_image_mib("DenseNet-121", resolution_px)
    return max(1, min(recipe, int(budget // memory_per_image_mib(family, resolution_px))))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (read now, so
    that a changed environment counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def timm_imagenet_file(name: str) -> Path:
    """timm's pretrained file of `name` from the local caches only (no network): the Hugging Face cache
    (model.safetensors or pytorch_model.bin of the pretrained_cfg's hf_hub_id), then torch's hub cache (the basename of
    its url); otherwise a one-line WeightsError naming the file and where to put it."""
    import timm
    import torch
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsError(f"timm:{name}: timm knows no pretrained weights for this model; pass --weights PATH or none")
    cache = hf_cache_dir()
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        for filename in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            found = try_to_load_from_cache(repo, filename, cache_dir=str(cache))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if cfg.url and not cfg.url.endswith(".npz"):
        candidate = hub / os.path.basename(urlparse(cfg.url).path)
        if candidate.is_file():
            return candidate
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        raise WeightsError(
            f"timm:{name}: ImageNet weights not found offline: put model.safetensors of {repo} "
            f"(https://huggingface.co/{repo}/resolve/main/model.safetensors) into the Hugging Face "
            f"cache {cache} (`hf download {repo} model.safetensors` with HF_HUB_CACHE={cache}), "
            f"or pass it as --weights PATH, or --weights none"
        )
    target = hub / os.path.basename(urlparse(cfg.url).path)
    raise WeightsError(
        f"timm:{name}: ImageNet weights not found offline: download {cfg.url} and put it at {target}, "
        f"or pass it as --weights PATH, or --weights none"
    )
