"""What a network family is to cxrres (`ArchSpec`: display name, head, features/head split, CAM grid) and the error of
weights that cannot be found, trusted or matched. Shared by the torchvision and timm registrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch
    from torch import nn

from cxrres.errors import CxrresError


class WeightsError(CxrresError):
    """Weights cannot be found, trusted, or matched to the model."""


def _conv_grid(model: nn.Module, a: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """A convolutional feature map is its own grid: (B, K, h, w) unchanged."""
    return a


def _same_network(model: nn.Module, resolution_px: int) -> nn.Module:
    """A network that takes any resolution already has the graph of a fixed one: itself."""
    return model


@dataclass(frozen=True)
class ArchSpec:
    """One family of networks: its display name, network class (by dotted name, imported when needed), the name of its
    final linear layer, its split into features and head as timm's `forward_features` / `forward_head`
    (head(features(x)) == model(x); features end with the last block's activation, not in place), how the features
    become a (B, K, h, w) grid for class activation maps, and the input pixels per grid cell.

    torchvision's two architectures also name their builder and ImageNet weights; timm's families are built by
    `timm.create_model` with `create_kwargs` (see `cxrres.models.timm_backbones`)."""

    display_name: str
    type_name: str  # dotted path of the network class, e.g. torchvision.models.DenseNet
    head: str  # attribute path of the final nn.Linear (timm: the model's pretrained_cfg `classifier`)
    forward_features: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    forward_head: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    to_grid: Callable[[nn.Module, torch.Tensor, tuple[int, int]], torch.Tensor] = _conv_grid
    stride_px: int = 32  # input pixels per map cell
    builder_name: str = ""  # torchvision only: function in torchvision.models
    weights_name: str = ""  # torchvision only: weights enum in torchvision.models (IMAGENET1K_V1 is used)
    create_kwargs: tuple[tuple[str, object], ...] = ()  # timm only: extra timm.create_model arguments
    #: the same function at one fixed resolution, for export (a ViT's position embeddings resampled once)
    at_resolution: Callable[[nn.Module, int], nn.Module] = _same_network

    @property
    def builder(self) -> Callable[..., nn.Module]:
        """torchvision's builder function."""
        import torchvision

        return getattr(torchvision.models, self.builder_name)

    @property
    def imagenet(self):  # -> torchvision.models.WeightsEnum
        """torchvision's ImageNet weights of this architecture."""
        import torchvision

        return getattr(torchvision.models, self.weights_name).IMAGENET1K_V1

    @property
    def model_type(self) -> type[nn.Module]:
        """The network class (imported on first use)."""
        import importlib

        module, _, name = self.type_name.rpartition(".")
        return getattr(importlib.import_module(module), name)
