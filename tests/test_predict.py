"""Using a trained run: operating points, `cxrres predict` on new files (reproducing the run's own test predictions),
heat maps, bad files, and `cxrres export` to ONNX / TorchScript checked against PyTorch with a model card."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset as DicomFile, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrres import runs
from cxrres.cli import main
from cxrres.config import TrainConfig
from cxrres.data.images import load_resized
from cxrres.errors import CxrresError
from cxrres.deploy.export import export_run
from cxrres.localization.overlay import figure_px
from cxrres.evaluation.operating import OperatingRule, choose_threshold, operating_points, positive_calls
from cxrres.deploy.predict import predict_files
from cxrres.synthetic import synthesize
from cxrres.training.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch 32-px run on a 60-image phantom, and the phantom's root."""
    base = tmp_path_factory.mktemp("predict")
    synthesize(base / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    run_dir = train(
        TrainConfig(
            data=str(base / "phantom"),
            resolution_px=32,
            weights="none",
            out=str(base / "run"),
            cache=str(base / "cache"),
            max_epochs=1,
            batch_size=8,
            progress=False,
        )
    )
    return run_dir, base / "phantom"


# --- operating points (pure) ----------------------------------------------------------------------------------


def _brute_force(labels: np.ndarray, scores: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, sensitivity, specificity) at every distinct score, from the definition."""
    out = []
    for t in sorted(set(scores.tolist()), reverse=True):
        call = scores >= t
        out.append(
            (t, (call & (labels == 1)).sum() / (labels == 1).sum(), (~call & (labels == 0)).sum() / (labels == 0).sum())
        )
    return out


def test_youden_and_sensitivity_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        labels = (rng.random(40) < 0.3).astype(int)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(40) + 0.4 * labels, 1)  # rounding makes ties
        points = _brute_force(labels, scores)
        j = [s + p - 1 for _, s, p in points]
        best = points[int(np.argmax(j))]
        assert choose_threshold(labels, scores, OperatingRule("youden")) == pytest.approx(best)
        target = _brute_force(labels, scores)
        wanted = next(p for p in target if p[1] >= 0.8)
        assert choose_threshold(labels, scores, OperatingRule("sensitivity", 0.8)) == pytest.approx(wanted)


def test_operating_points_edge_cases() -> None:
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.5], [0.1, 0.2]])
    table = operating_points(labels, scores, ["A", "B"], OperatingRule.parse("youden"))
    assert (
        table["threshold"].iloc[0] == 0.8
        and table["sensitivity"].iloc[0] == 1.0
        and table["specificity"].iloc[0] == 1.0
    )
    assert np.isnan(table["threshold"].iloc[1])  # no positives: no threshold, no calls
    calls = positive_calls(scores, table["threshold"].to_numpy())
    assert calls[:, 0].tolist() == [1, 0, 1, 0] and np.isnan(calls[:, 1]).all()
    assert str(OperatingRule.parse("sensitivity:0.9")) == "sensitivity:0.9"
    for bad in ("sensitivity:1.5", "sensitivity:x", "youden:1", "f1"):
        with pytest.raises(CxrresError, match="unknown operating point"):
            OperatingRule.parse(bad)


# --- predict ---------------------------------------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def test_predict_reproduces_the_runs_test_predictions(run, tmp_path) -> None:
    run_dir, phantom = run
    before = _tree(run_dir)
    expected = runs.read_predictions(run_dir)
    files = [phantom / "images" / name for name in expected.images]  # the test part, in its order
    config = runs.read_settings(run_dir)
    result = predict_files(run_dir, files, tmp_path / "out", workers=2, batch_size=config.batch_size, progress=False)
    assert _tree(run_dir) == before  # predicting reads the run, never writes it
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert [Path(p).name for p in table["path"]] == expected.images
    # one scoring precision (float32) for the run's own predictions and predict: the same pixels, the same numbers
    assert np.abs(table[expected.classes].to_numpy() - expected.scores).max() <= 1e-4
    ops = pd.read_csv(run_dir / runs.OPERATING_POINTS)  # written when the run was trained
    assert ops["rule"].eq("youden").all() and len(ops) == 14
    used = pd.read_csv(tmp_path / "out" / "operating_points.csv")
    assert used["threshold"].equals(ops["threshold"])
    for _, op in ops.iterrows():
        column = table["positive_" + op["class"]]
        if np.isnan(op["threshold"]):
            assert column.isna().all()
        else:  # every call follows from the written probability and the written threshold, as float32
            written = table[op["class"]].to_numpy(np.float64).astype(np.float32)
            assert column.tolist() == (written >= np.float32(op["threshold"])).astype(int).tolist()
    assert result.images_per_s > 0


def test_written_operating_points_are_what_the_validation_calls_give(run) -> None:
    """The sensitivity and specificity operating_points.csv claims are those of the calls made from the written
    validation probabilities and the written thresholds (float32 round trip: 9 significant digits)."""
    run_dir, _ = run
    val = runs.read_predictions(run_dir, runs.PREDICTIONS_VAL)
    assert val.scores.dtype == np.float32
    ops = pd.read_csv(run_dir / runs.OPERATING_POINTS)
    calls = positive_calls(val.scores, ops["threshold"].to_numpy(np.float64).astype(np.float32))
    checked = 0
    for c, (_, op) in enumerate(ops.iterrows()):
        if np.isnan(op["threshold"]):
            continue
        kept = val.labels[:, c] != -1
        y, call = val.labels[kept, c], calls[kept, c]
        assert np.float32(op["threshold"]) in set(val.scores[kept, c].tolist())  # a written validation probability
        assert call[y == 1].mean() == op["sensitivity"] and (1 - call[y == 0]).mean() == op["specificity"]
        checked += 1
    assert checked >= 2  # the classes with positive and negative validation images of this 60-image phantom


def test_float32_probabilities_round_trip_through_csv(tmp_path) -> None:
    """Ties within 1e-7 of each other (bf16 logits make them common) stay ordered after writing and reading."""
    rng = np.random.default_rng(0)
    scores = np.float32(0.0481368) + rng.integers(-3, 4, size=(200, 2)).astype(np.float32) * np.float32(3.7e-9)
    scores = scores.astype(np.float32)
    labels = (rng.random((200, 2)) < 0.3).astype(np.int8)
    written = runs.Predictions([f"{i}.png" for i in range(200)], ["A", "B"], scores, labels)
    runs.write_predictions(tmp_path / runs.PREDICTIONS, written)
    (tmp_path / runs.CONFIG).write_text("")
    back = runs.read_predictions(tmp_path)
    assert back.scores.dtype == np.float32 and np.array_equal(back.scores, scores)


def test_folder_input_dicom_and_jpeg(run, tmp_path) -> None:
    run_dir, phantom = run
    name = runs.read_predictions(run_dir).images[0]
    png = phantom / "images" / name
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    grey = np.asarray(Image.open(png).convert("L"))
    Image.fromarray(grey).save(folder / "a.jpg", quality=95)
    _write_dicom(folder / "b.dcm", grey)
    (folder / "notes.txt").write_text("not an image")
    assert (
        main(["predict", str(run_dir), str(png), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    )
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert [Path(p).name for p in table["path"]] == [name, "a.jpg", "b.dcm"]
    classes = runs.read_predictions(run_dir).classes
    # an 8-bit DICOM of the same pixels is the same network input as the PNG
    assert np.abs(table.loc[2, classes].to_numpy(float) - table.loc[0, classes].to_numpy(float)).max() <= 1e-6


def test_one_picture_three_encodings_same_probabilities(run, tmp_path) -> None:
    """8-bit PNG, 16-bit PNG (values x 257) and a 16-bit DICOM with a full-range window: one rule maps every stored
    bit depth to the network's input, so the three give the same probabilities (<= 1e-4)."""
    run_dir, phantom = run
    names = runs.read_predictions(run_dir).images[:3]
    files = []
    for name in names:
        grey = np.asarray(Image.open(phantom / "images" / name).convert("L"))
        stem = tmp_path / Path(name).stem
        Image.fromarray(grey).save(f"{stem}_8.png")
        Image.fromarray(grey.astype(np.uint16) * 257).save(f"{stem}_16.png")
        _write_dicom(Path(f"{stem}_16.dcm"), grey.astype(np.uint16) * 257, window=(32768, 65536))
        files += [Path(f"{stem}_8.png"), Path(f"{stem}_16.png"), Path(f"{stem}_16.dcm")]
    predict_files(run_dir, files, tmp_path / "out", workers=0, progress=False)
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    probs = table[runs.read_predictions(run_dir).classes].to_numpy().reshape(len(names), 3, -1)
    assert np.abs(probs - probs[:, :1]).max() <= 1e-4


def _write_dicom(path: Path, grey: np.ndarray, window: tuple[float, float] | None = None) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = DicomFile(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "P1"
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 16 if grey.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = grey.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == grey.shape


def test_heatmaps_top3_and_named(run, tmp_path) -> None:
    run_dir, phantom = run
    files = [phantom / "images" / n for n in runs.read_predictions(run_dir).images[:2]]
    result = predict_files(run_dir, files, tmp_path / "a", heatmaps="top3", progress=False)
    assert len(result.heatmaps) == 6 and all(p.is_file() and p.stat().st_size > 1000 for p in result.heatmaps)
    picture = np.asarray(Image.open(result.heatmaps[0]))  # a 512-px panel, caption lines above, colour bar beside
    assert picture.shape[1] == figure_px((512, 512), 2)[1] and picture.shape[0] > 512
    named = predict_files(
        run_dir, files, tmp_path / "b", heatmaps="Nodule,Cardiomegaly", method="hirescam", progress=False
    )
    assert sorted(p.name for p in named.heatmaps) == sorted(
        f"{f.stem}_{c}.png" for f in files for c in ("Nodule", "Cardiomegaly")
    )
    with pytest.raises(CxrresError, match="unknown class 'Nodules'"):
        predict_files(run_dir, files, tmp_path / "c", heatmaps="Nodules", progress=False)


def test_bad_files_one_line_or_skipped(run, tmp_path) -> None:
    run_dir, phantom = run
    good = phantom / "images" / runs.read_predictions(run_dir).images[0]
    empty, fake = tmp_path / "empty.png", tmp_path / "fake.png"
    empty.write_bytes(b"")
    fake.write_text("hello")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrres.cli",
            "predict",
            str(run_dir),
            str(good),
            str(empty),
            "--out",
            str(tmp_path / "o1"),
            "--quiet",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "empty.png" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o1" / "predictions.csv").exists()
    out = predict_files(run_dir, [good, empty, fake], tmp_path / "o2", skip_bad=True, workers=0, progress=False)
    assert len(out.predictions) == 1 and [Path(p).name for p, _ in out.skipped] == ["empty.png", "fake.png"]
    skipped = pd.read_csv(tmp_path / "o2" / "skipped.csv")
    assert skipped["path"].map(lambda p: Path(p).name).tolist() == ["empty.png", "fake.png"]


def test_run_without_checkpoint_is_one_line(run, tmp_path) -> None:
    run_dir, _ = run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / runs.CONFIG).write_text((run_dir / runs.CONFIG).read_text())
    with pytest.raises(CxrresError, match=re.escape(str(broken / "checkpoints" / "best.ckpt")) + ".*rerun"):
        predict_files(broken, [tmp_path], tmp_path / "o", progress=False)


# --- export ----------------------------------------------------------------------------------------------------


def test_onnx_export_matches_pytorch_and_has_a_model_card(run, tmp_path) -> None:
    import onnxruntime

    run_dir, phantom = run
    assert main(["evaluate", str(run_dir), "--n-boot", "50"]) == 0
    path = export_run(run_dir, "onnx", tmp_path / "model.onnx")
    config = runs.read_settings(run_dir)
    images = np.stack(
        [load_resized(phantom / "images" / n, (32,))[0][32] for n in runs.read_predictions(run_dir).images[:3]]
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image_uint8": images})[0]
    from cxrres.deploy.export import ExportWrapper
    from cxrres.inference.network import load_run_model

    model, _, _ = load_run_model(run_dir)
    with torch.no_grad():
        want = ExportWrapper(model.float().eval()).eval()(torch.from_numpy(images)).numpy()
    assert got.shape == (3, 14) and np.abs(got - want).max() <= 1e-4  # batch 3: the batch axis is dynamic
    # the graph's probabilities are the run's own fp32 forward: prepare_input + sigmoid
    from cxrres.inference.network import prepare_input

    with torch.no_grad():
        direct = torch.sigmoid(model(prepare_input(torch.from_numpy(images)[:, None], False))).numpy()
    assert np.abs(got - direct).max() <= 1e-4
    # the exported graph, predict and the run's own test predictions agree on the same pixels (one scoring precision)
    names = runs.read_predictions(run_dir).images[:3]
    predict_files(run_dir, [phantom / "images" / n for n in names], tmp_path / "p", workers=0, progress=False)
    predicted = pd.read_csv(tmp_path / "p" / "predictions.csv")[runs.read_predictions(run_dir).classes].to_numpy()
    assert np.abs(predicted - got).max() <= 1e-4
    assert np.abs(runs.read_predictions(run_dir).scores[:3] - got).max() <= 1e-4
    card = (tmp_path / "model.onnx.md").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card
    assert "positive when its probability is >= its threshold" in card and "float32 without autocast" in card
    assert "synthetic phantom" in card and "report" not in card.split("## Intended use")[1]
    ops = pd.read_csv(run_dir / runs.OPERATING_POINTS)
    defined = ops.dropna(subset=["threshold"])
    assert len(defined) >= 1 and all(
        f"| {r['class']} | youden | {r['threshold']:.9g} |" in card for _, r in defined.iterrows()
    )
    assert f"{config.resolution_px} px" in card and "not a medical device" in card and "| mean |" in card


def test_torchscript_export_round_trip(run, tmp_path) -> None:
    run_dir, phantom = run
    path = export_run(run_dir, "torchscript", tmp_path / "model.pt")
    loaded = torch.jit.load(str(path))
    images = torch.randint(0, 256, (4, 32, 32), dtype=torch.uint8)
    from cxrres.deploy.export import ExportWrapper
    from cxrres.inference.network import load_run_model

    model, _, _ = load_run_model(run_dir)
    with torch.no_grad():
        assert torch.allclose(loaded(images), ExportWrapper(model.float().eval()).eval()(images), atol=1e-5)
    with pytest.raises(CxrresError, match="unknown export format"):
        export_run(run_dir, "tflite", tmp_path / "m.tflite")


def test_export_tells_a_folder_that_is_not_a_run_from_an_unfinished_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes").mkdir()
    assert main(["export", str(tmp_path / "notes"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert (
        capsys.readouterr().err == f"cxrres export: error: {tmp_path / 'notes'}: not a run directory (no config.yaml)\n"
    )
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / runs.CONFIG).write_text("settings: {data: /nih, resolution_px: 64}\n")
    assert main(["export", str(tmp_path / "unfinished"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "unfinished/checkpoints/best.ckpt: missing; finish the run first" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
