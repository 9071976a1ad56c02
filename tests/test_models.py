"""cxrres.models.registry: the factory, ImageNet file handling offline, CheXNet key remapping, weights_only refusal."""

from __future__ import annotations

import os
import re
from collections import OrderedDict

import pytest
import torch

from cxrres.models.registry import ARCHS, WeightsError, create_model, imagenet_file, remap_keys


class _Payload:
    """A pickle that would run code on load: creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _chexnet_style(model: torch.nn.Module) -> OrderedDict:
    """A state dict as CheXNet (arnoweng) saved it: DataParallel + `densenet121.` prefix, `norm.1` names, Sequential
    head, and (PyTorch 0.3) no BatchNorm `num_batches_tracked`."""
    out = OrderedDict()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)
        key = key.replace("classifier.", "classifier.0.")
        out["module.densenet121." + key] = value.clone()
    return out


@pytest.mark.parametrize("arch,head", [("densenet121", "classifier"), ("resnet34", "fc")])
def test_factory_heads(arch, head):
    model = create_model(arch, 14, weights="none")
    assert getattr(model, head).out_features == 14
    assert create_model(arch, 1, weights=None)(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_chexnet_checkpoint_remaps_and_loads_completely(tmp_path):
    torch.manual_seed(0)
    source = create_model("densenet121", 14, weights="none")
    path = tmp_path / "model.pth.tar"
    torch.save({"epoch": 3, "arch": "densenet121", "state_dict": _chexnet_style(source)}, path)
    assert any(".norm.1." in k for k in torch.load(path, weights_only=True)["state_dict"])
    loaded = create_model("densenet121", 14, weights=path)
    for (k, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # a 1-class network from the same file keeps the backbone and gets a fresh head
    single = create_model("densenet121", 1, weights=path)
    assert torch.equal(single.features.conv0.weight, source.features.conv0.weight)
    assert single.classifier.out_features == 1


def test_remap_keys_examples():
    t = torch.zeros(1)
    got = remap_keys(
        {
            "module.densenet121.features.denseblock1.denselayer1.norm.1.weight": t,
            "module.densenet121.classifier.0.bias": t,
            "model.features.conv0.weight": t,
        },
        "classifier",
    )
    assert set(got) == {"features.denseblock1.denselayer1.norm1.weight", "classifier.bias", "features.conv0.weight"}


def test_mismatch_names_keys(tmp_path):
    state = create_model("resnet34", 14, weights="none").state_dict()
    path = tmp_path / "resnet.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing \d+ keys \(features\..*unexpected \d+ keys \(bn1\."):
        create_model("densenet121", 14, weights=path)


def test_weights_only_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": _Payload(str(marker))}, path)
    with pytest.raises(WeightsError, match=r"evil\.pt: refused to load"):
        create_model("resnet34", 14, weights=path)
    assert not marker.exists()


def test_imagenet_offline_message_and_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = imagenet_file("densenet121")
    assert target == tmp_path / "torch" / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    with pytest.raises(WeightsError, match=re.escape(f"place it at {target}")):
        create_model("densenet121", 14, weights="imagenet")
    # torchvision's file uses the old `norm.1` names and a 1000-way head; placed there, it loads with a new head
    torch.manual_seed(1)
    imagenet = create_model("densenet121", 1000, weights="none")
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in imagenet.state_dict().items()},
        target,
    )
    model = create_model("densenet121", 14, weights="imagenet")
    assert torch.equal(
        model.features.denseblock4.denselayer16.norm2.weight, imagenet.features.denseblock4.denselayer16.norm2.weight
    )
    assert model.classifier.out_features == 14
    assert set(ARCHS) == {"densenet121", "resnet34"}
