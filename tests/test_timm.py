"""timm backbones (`--arch timm:NAME`): training each family through `cxrres.training.train.train`, the ViT's maps
scored on every test box, class activation maps against pytorch-grad-cam, offline ImageNet weights, local files,
resolutions, batch sizes and ONNX export. Tiny variants (convnext_atto, efficientnet_b0, vit_tiny_patch16_224) keep them
fast."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

timm = pytest.importorskip("timm")

from cxrres.config import TrainConfig, default_run_dir, resolve  # noqa: E402
from cxrres.models.registry import default_batch_size, recipe_batch_size  # noqa: E402
from cxrres.errors import CxrresError  # noqa: E402
from cxrres.models.registry import WeightsError, arch_spec, create_model, display_name, spec_of  # noqa: E402
from cxrres.localization.saliency import class_activation_maps, split_network  # noqa: E402
from cxrres.models.timm_backbones import MEMORY_MIB, hf_cache_dir, memory_per_image_mib  # noqa: E402

CONVNEXT, EFFICIENTNET, VIT = "timm:convnext_atto", "timm:efficientnet_b0", "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """48 phantom images of 64 px (NIH layout, with boxes)."""
    from cxrres.synthetic import synthesize

    root = tmp_path_factory.mktemp("timm") / "phantom"
    synthesize(root, n_images=48, size_px=64, seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def runs_by_arch(phantom) -> dict[str, Path]:
    """One epoch at 64 px, batch 8, random initial weights, of each family: {arch: run directory}."""
    from cxrres.training.train import train

    out = {}
    for arch in (CONVNEXT, EFFICIENTNET, VIT):
        config = TrainConfig(
            data=str(phantom),
            resolution_px=64,
            arch=arch,
            weights="none",
            max_epochs=1,
            batch_size=8,
            progress=False,
            out=str(phantom.parent / arch.replace(":", "-")),
        )
        out[arch] = train(config)
    return out


@pytest.mark.parametrize("arch,family", [(CONVNEXT, "ConvNeXt"), (EFFICIENTNET, "EfficientNet"), (VIT, "ViT")])
def test_each_family_trains_one_epoch_and_reloads(runs_by_arch, arch, family):
    from cxrres import runs
    from cxrres.inference.network import load_run_model

    run = runs_by_arch[arch]
    model, config, classes = load_run_model(run)
    assert config.arch == arch and config.batch_size == 8
    assert (
        type(model).__name__
        == {"ConvNeXt": "ConvNeXt", "EfficientNet": "EfficientNet", "ViT": "VisionTransformer"}[family]
    )
    assert model.get_classifier().out_features == len(classes) == 14
    history = pd.read_csv(run / runs.METRICS)
    assert len(history) == 1 and np.isfinite(history.iloc[0]["val_loss"])
    test = pd.read_csv(run / "predictions_test.csv")
    assert len(test) > 0 and test[classes].apply(lambda c: c.between(0, 1)).all().all()


def test_vit_run_localizes_every_test_box(runs_by_arch, phantom):
    from cxrres import runs
    from cxrres.data import read_bbox_list
    from cxrres.localization.localize import localize_run

    run = runs_by_arch[VIT]
    config = runs.read_settings(run)
    result = localize_run(run, examples=1, progress=False)
    samples = pd.read_csv(run / runs.LOCALIZATION_SAMPLES)
    boxes = read_bbox_list(phantom / "BBox_List_2017.csv")
    test = set((phantom / "splits" / "chexnet" / "test_list.txt").read_text().split())
    wanted = boxes[boxes["image"].isin(test) & boxes["label"].isin(config.classes)]
    assert len(wanted) > 0 and len(samples) == len(wanted) == len(result.samples)
    assert ((samples["precision"] >= 0) & (samples["precision"] <= 1)).all()


def test_vit_maps_on_the_patch_grid_at_any_multiple_of_16():
    torch.manual_seed(0)
    model = create_model(VIT, 3, weights="none").eval()
    for side in (32, 96):
        x = torch.randn(2, 3, side, side)
        backbone, head = split_network(model)
        with torch.no_grad():
            assert torch.allclose(head(backbone(x)), model(x), atol=1e-5)
            assert backbone(x).shape[1] == (side // 16) ** 2 + model.num_prefix_tokens
        maps = class_activation_maps(model, x, torch.tensor([0, 2]))
        assert maps.shape == (2, side // 16, side // 16) and (maps >= 0).all()


def test_resolutions_a_network_cannot_take_are_refused_in_one_line(tmp_path):
    for arch, side, words in (
        (VIT, 40, "not a multiple of its 16-px patches; use 32 or 48 px"),
        (VIT, 16, "below its minimum of 32 px"),
        (CONVNEXT, 24, "below its minimum of 32 px"),
    ):
        with pytest.raises(CxrresError, match=words) as error:
            resolve(TrainConfig(data=str(tmp_path), resolution_px=side, arch=arch, out=str(tmp_path / "r")))
        assert "\n" not in str(error.value)
    for arch, words in (
        ("timm:no_such_net", "unknown timm model 'no_such_net'"),
        ("timm:resnet18", "is a resnet network; supported families: ConvNeXt"),
        ("vgg16", "unknown architecture 'vgg16'"),
    ):
        with pytest.raises(CxrresError, match=words):
            resolve(TrainConfig(data=str(tmp_path), resolution_px=64, arch=arch, out=str(tmp_path / "r")))


def test_features_head_split_and_names_for_each_family():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for arch, head, grid in ((CONVNEXT, "head.fc", 2), (EFFICIENTNET, "classifier", 2), (VIT, "head", 4)):
        model = create_model(arch, 5, weights="none").eval()
        spec = spec_of(model)
        assert spec.head == arch_spec(arch).head == head and model.get_submodule(head) is model.get_classifier()
        backbone, split_head = split_network(model)
        with torch.no_grad():
            assert torch.allclose(split_head(backbone(x)), model(x), atol=1e-5)
        assert class_activation_maps(model, x, torch.tensor([1, 4])).shape == (2, grid, grid)
    assert display_name(CONVNEXT) == "convnext_atto" and display_name("densenet121") == "DenseNet-121"
    config = TrainConfig(data="d", resolution_px=64, arch=CONVNEXT)
    assert default_run_dir(config).name == "timm-convnext_atto_64px_seed0"


def _library_raw_map(cams, model, layer, x, classes, reshape=None) -> np.ndarray:
    """pytorch-grad-cam's GradCAM before its min-max scaling and resize: its own hooks, weights and ReLU."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(c) for c in classes]
    with cams.GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        cam(input_tensor=x, targets=targets)
        a = cam.activations_and_grads.activations[0].cpu().numpy()
        g = cam.activations_and_grads.gradients[0].cpu().numpy()
        return np.maximum(cam.get_cam_image(x, layer, targets, a, g, False), 0)


def test_maps_agree_with_pytorch_grad_cam_for_convnext_and_vit():
    cams = pytest.importorskip("pytorch_grad_cam")
    classes = [0, 3, 1]
    torch.manual_seed(2)
    convnext = create_model(CONVNEXT, 4, weights="none").eval()
    x = torch.randn(3, 3, 128, 128)
    expected = _library_raw_map(cams, convnext, convnext.stages[-1], x, classes)
    ours = class_activation_maps(convnext, x, torch.tensor(classes)).numpy()
    assert ours.shape == expected.shape == (3, 4, 4) and expected.max() > 0
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()

    vit = create_model(VIT, 4, weights="none").eval()
    x = torch.randn(3, 3, 64, 64)

    def reshape(tokens: torch.Tensor) -> torch.Tensor:  # pytorch-grad-cam's ViT recipe: drop the class token
        patches = tokens[:, vit.num_prefix_tokens :, :]
        return patches.reshape(tokens.shape[0], 4, 4, tokens.shape[2]).permute(0, 3, 1, 2)

    expected = _library_raw_map(cams, vit, vit.blocks[-2], x, classes, reshape)  # the tokens entering the last block
    ours = class_activation_maps(vit, x, torch.tensor(classes)).numpy()
    assert ours.shape == expected.shape == (3, 4, 4) and expected.max() > 0
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


def _fake_hf_cache(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """The Hugging Face cache layout holding one model.safetensors of `repo`."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def test_imagenet_weights_offline_refusal_and_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    repo = timm.models.get_pretrained_cfg("vit_tiny_patch16_224").hf_hub_id
    with pytest.raises(WeightsError) as error:
        create_model(VIT, 3, weights="imagenet")
    message = str(error.value)
    with pytest.raises(WeightsError, match="ImageNet weights not found offline"):  # before any run file is written
        resolve(TrainConfig(data=str(tmp_path), resolution_px=64, arch=VIT, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    assert "\n" not in message and f"model.safetensors of {repo}" in message and str(tmp_path / "hf") in message
    assert hf_cache_dir() == tmp_path / "hf"
    torch.manual_seed(4)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=1000)  # as timm publishes it: 1000 classes
    _fake_hf_cache(tmp_path / "hf", repo, source.state_dict())
    model = create_model(VIT, 3, weights="imagenet")
    assert torch.equal(model.pos_embed, source.pos_embed) and torch.equal(
        model.blocks[5].mlp.fc2.weight, source.blocks[5].mlp.fc2.weight
    )
    assert model.head.out_features == 3  # a fresh 3-way head


def test_local_weights_file_round_trip_and_refusal(tmp_path):
    torch.manual_seed(5)
    source = create_model(EFFICIENTNET, 2, weights="none").eval()
    path = tmp_path / "effnet.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)  # Lightning-style
    loaded = create_model(EFFICIENTNET, 2, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    torch.save({"conv_stem.weight": torch.zeros(1), "x": Payload()}, evil)
    with pytest.raises(WeightsError, match="refused to load"):
        create_model(EFFICIENTNET, 2, weights=evil)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(WeightsError, match="weights do not fit the model"):
        create_model(CONVNEXT, 2, weights=path)


def test_batch_size_from_the_memory_table():
    for resolution in (64, 128, 256, 512, 1024):
        recipe = recipe_batch_size(resolution)
        assert default_batch_size("densenet121", resolution) == recipe == default_batch_size("resnet34", resolution)
        for arch, family in ((CONVNEXT, "ConvNeXt"), (EFFICIENTNET, "EfficientNet"), (VIT, "ViT")):
            budget = recipe * memory_per_image_mib("DenseNet-121", resolution)
            expected = max(1, min(recipe, int(budget // memory_per_image_mib(family, resolution))))
            assert default_batch_size(arch, resolution) == expected
            assert 1 <= expected <= recipe
    assert all(b > 0 for _, b in MEMORY_MIB.values())  # measured, not placeholders


def test_a_family_heavier_than_densenet_gets_a_smaller_batch(monkeypatch):
    a, b = MEMORY_MIB["DenseNet-121"]
    monkeypatch.setitem(MEMORY_MIB, "ViT", (4 * a, 4 * b))  # four times DenseNet-121's memory per image
    assert [default_batch_size(VIT, r) for r in (64, 256, 1024)] == [16, 4, 3]
    assert default_batch_size(CONVNEXT, 256) == 16


@pytest.mark.parametrize("arch", [CONVNEXT, VIT])
def test_export_to_onnx_gives_the_run_network_outputs(runs_by_arch, tmp_path, arch):
    """ConvNeXt as is; the ViT with its position embeddings resampled once to the run's 4 x 4 grid (the per-call
    antialiased resampling has no ONNX operator), compared with the dynamic-size network the run trained."""
    ort = pytest.importorskip("onnxruntime")
    from cxrres.deploy.export import ExportWrapper, export_run
    from cxrres.inference.network import load_run_model

    run = runs_by_arch[arch]
    out = export_run(run, "onnx", tmp_path / "model.onnx")
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image_uint8": images})[0]
    model = load_run_model(run)[0].float().eval()
    with torch.no_grad():
        expected = ExportWrapper(model).eval()(torch.from_numpy(images)).numpy()
    assert got.shape == (3, 14) and np.abs(got - expected).max() <= 1e-4
    assert display_name(arch) in out.with_name(out.name + ".md").read_text()
