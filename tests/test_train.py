"""cxrres.training.train on a tiny phantom at 32 px: end to end, resume == uninterrupted, single label, NaN stop, DDP
metrics."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from lightning.pytorch.callbacks import Callback
from torchmetrics import MeanMetric
from torchmetrics.classification import MultilabelAUROC

from cxrres import runs
from cxrres.evaluation import metrics
from cxrres.cli import main
from cxrres.data.labels import CLASSES
from cxrres.errors import CxrresError
from cxrres.synthetic import synthesize
from cxrres.config import TrainConfig, cpu_has_native_bf16, resolve
from cxrres.inference.network import ShardSampler, load_run_model
from cxrres.training.module import ChestClassifier, TrainingDiverged
from cxrres.training.train import train


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("phantom")
    synthesize(out, n_images=60, size_px=64, seed=3, workers=1, progress=False)
    return str(out)


def _config(phantom: str, out, **overrides) -> TrainConfig:
    settings = dict(
        data=phantom,
        resolution_px=32,
        weights="none",
        out=str(out),
        cache=str(out) + "-cache",
        max_epochs=1,
        batch_size=8,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_one_epoch_end_to_end(phantom, tmp_path):
    run = train(_config(phantom, tmp_path / "run"))
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    history = pd.read_csv(run / "metrics.csv")
    assert history.columns[:5].tolist() == ["epoch", "train_loss", "val_loss", "val_mean_auc", "lr"]
    assert history["epoch"].tolist() == [1] and history["lr"].iloc[0] == pytest.approx(3e-4)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["settings"]["batch_size"] == 8 and config["settings"]["precision"] == (
        "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    )
    assert config["identity"]["split_digest"] and config["versions"]["torch"]
    assert sum(config["data"]["images"].values()) == 60
    predictions = runs.read_predictions(run)
    assert predictions.classes == list(CLASSES)
    assert len(predictions.images) == config["data"]["images"]["test"]
    assert ((predictions.scores > 0) & (predictions.scores < 1)).all()
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "finished" and status["epochs"] == 1 and status["train_images_per_s"] > 0
    # the predictions are those of best.ckpt, reloaded with weights_only
    model, _, _ = load_run_model(run)
    assert sum(p.numel() for p in model.parameters()) > 6_000_000


class _Crash(Callback):
    """Simulates a killed job: fails at the start of epoch `epoch` (0-based), after earlier epochs were saved."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


def test_resume_after_interrupt_equals_uninterrupted_run(phantom, tmp_path):
    settings = dict(max_epochs=4, lr=3e-3, lr_patience=0, stop_patience=10)
    whole = train(_config(phantom, tmp_path / "whole", **settings))
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(phantom, tmp_path / "cut", **settings), callbacks=[_Crash(epoch=2)])
    cut = tmp_path / "cut"
    assert len(pd.read_csv(cut / "metrics.csv")) == 2 and not (cut / "predictions_test.csv").exists()
    train(_config(phantom, cut, **settings))  # the same command again: continues at epoch 3
    a, b = (tmp_path / "whole" / "metrics.csv").read_text(), (cut / "metrics.csv").read_text()
    assert a == b  # same losses, AUCs and learning rates (the plateau state was restored)
    assert len(pd.read_csv(cut / "metrics.csv")) == 4
    assert pd.read_csv(cut / "metrics.csv")["lr"].nunique() > 1  # the schedule did act
    assert (whole / "predictions_test.csv").read_text() == (cut / "predictions_test.csv").read_text()


def test_single_label_network(phantom, tmp_path):
    run = train(_config(phantom, tmp_path / "eff", label="Effusion"))
    predictions = runs.read_predictions(run)
    assert predictions.classes == ["Effusion"] and predictions.scores.shape[1] == 1
    model, config, classes = load_run_model(run)
    assert model.classifier.out_features == 1 and classes == ["Effusion"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(phantom, tmp_path, monkeypatch):
    original = ChestClassifier._losses

    def poisoned(self, logits, labels):
        losses, counts = original(self, logits, labels)
        return (losses * math.nan if self.training and self.current_epoch == 1 else losses), counts

    monkeypatch.setattr(ChestClassifier, "_losses", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"training loss became nan at epoch 2, step 1; the last good checkpoint is .*last\.ckpt"
    ):
        train(_config(phantom, tmp_path / "nan", max_epochs=3))
    run = tmp_path / "nan"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0  # saved after epoch 1
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


def test_cli_refuses_run_dir_with_other_settings_and_skips_finished(phantom, tmp_path, capsys):
    base = [
        "train",
        "--data",
        phantom,
        "--resolution",
        "32",
        "--weights",
        "none",
        "--out",
        str(tmp_path / "r"),
        "--cache",
        str(tmp_path / "c"),
        "--max-epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]
    assert main(base) == 0
    best = tmp_path / "r" / "checkpoints" / "best.ckpt"
    stamp = best.stat().st_mtime_ns
    assert main(base) == 0  # finished: not retrained
    assert best.stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(base[:-1] + ["--lr", "0.01", "--quiet"]) == 1
    assert "made with other settings (lr: 0.0003 -> 0.01)" in capsys.readouterr().err


def _offline(monkeypatch, tmp_path) -> Path:
    """No ImageNet weights on disk (an empty TORCH_HOME) and no network: every download fails. Returns TORCH_HOME."""
    import urllib.error

    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def test_failed_first_run_does_not_block_its_retry_with_other_settings(phantom, tmp_path, capsys, monkeypatch):
    home = _offline(monkeypatch, tmp_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # oneDNN's "no cap"
    run = tmp_path / "r"
    base = [
        "train",
        "--data",
        phantom,
        "--resolution",
        "32",
        "--out",
        str(run),
        "--cache",
        str(tmp_path / "c"),
        "--max-epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]
    assert main(base) == 1  # ImageNet weights by default: offline, they cannot be had
    err = capsys.readouterr().err
    assert str(home / "hub" / "checkpoints" / "densenet121-a639ec97.pth") in err and "--weights none" in err
    assert (run / runs.CONFIG).is_file()  # the failed run left its directory ...
    assert main(base + ["--weights", "none"]) == 0  # ... which the retry the message suggests may reuse
    assert runs.is_trained(run) and runs.read_config(run)["settings"]["weights"] == "none"
    status = runs.read_status(run)  # what fixes a CPU run's last bits is recorded
    assert status.threads == torch.get_num_threads() and status.cpu_kernels == torch.backends.cpu.get_cpu_capability()
    assert status.onednn_max_cpu_isa == "ALL"
    capsys.readouterr()
    assert main(base + ["--weights", "none", "--lr", "0.01"]) == 1  # a run that trained keeps its identity
    assert "made with other settings (lr: 0.0003 -> 0.01)" in capsys.readouterr().err


def test_run_json_written_before_the_compute_fields_still_reads(tmp_path):
    (tmp_path / runs.STATUS).write_text(
        json.dumps({"status": "finished", "epochs": 3, "device": "cpu (2 cores)", "a_later_field": 1})
    )
    status = runs.read_status(tmp_path)
    assert (status.status, status.epochs, status.threads, status.cpu_kernels) == ("finished", 3, None, None)
    runs.write_status(tmp_path, status)
    assert "threads" not in json.loads((tmp_path / runs.STATUS).read_text())  # unset fields stay out


def test_config_file_and_bad_settings(phantom, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("resolution_px: 32\nweights: none\nmax_epochs: 1\nbatch_size: 8\nlearning_rate: 0.1\n")
    assert main(["train", "--data", phantom, "--config", str(config), "--out", str(tmp_path / "r")]) == 1
    assert f"{config}: unknown setting 'learning_rate'" in capsys.readouterr().err
    assert main(["train", "--data", phantom, "--resolution", "32", "--label", "Pneumonitis"]) == 1
    assert "unknown label 'Pneumonitis'" in capsys.readouterr().err
    with pytest.raises(CxrresError, match="not divisible by 2 devices"):
        resolve(_config(phantom, tmp_path / "x", batch_size=7, devices=2))


def test_cpu_precision_follows_native_bf16(phantom, tmp_path, monkeypatch):
    import cxrres.config as config_module

    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(config_module, "cpu_has_native_bf16", lambda native=native: native)
        c = resolve(_config(phantom, tmp_path / "x", accelerator="cpu"))
        assert (c.precision, c.channels_last, c.deterministic) == (expected, True, True)
    assert resolve(_config(phantom, tmp_path / "x", accelerator="cpu", precision="32")).precision == "32-true"


# --- DDP: validation metrics gathered over 2 gloo processes equal the single-process ones ----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, probs: torch.Tensor, labels: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    auc_metric, loss_metric = MultilabelAUROC(probs.shape[1], average="none"), MeanMetric()
    shard = list(ShardSampler(len(probs), rank, world))
    for start in range(0, len(shard), 4):  # batches of 4 per rank, uneven shards
        idx = shard[start : start + 4]
        auc_metric.update(probs[idx], labels[idx].int())
        loss_metric.update(probs[idx, 0])
    aucs, mean = auc_metric.compute(), loss_metric.compute()
    if rank == 0:
        torch.save({"aucs": aucs, "mean": mean}, out)
    dist.destroy_process_group()


def test_ddp_validation_metrics_match_single_process(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 23, 3  # odd: the shards are 12 and 11 images, nothing padded or repeated
    labels = torch.tensor(rng.random((n, k)) < 0.4)
    labels[0], labels[1] = True, False
    probs = torch.tensor(rng.random((n, k)), dtype=torch.float32)
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), probs, labels, out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    for c in range(k):
        assert float(got["aucs"][c]) == pytest.approx(metrics.auc(labels[:, c].numpy(), probs[:, c].numpy()), abs=1e-6)
    assert float(got["mean"]) == pytest.approx(float(probs[:, 0].mean()), abs=1e-6)
    assert sorted(list(ShardSampler(n, 0, 2)) + list(ShardSampler(n, 1, 2))) == list(range(n))


def test_ddp_two_cpu_processes_end_to_end(phantom, tmp_path):
    """`cxrres train --devices 2` on the CPU (gloo): the val mean AUC in metrics.csv equals the single-process one."""
    from cxrres.config import resolve
    from cxrres.inference.network import predict
    from cxrres.evaluation.metrics import defined_classes
    from cxrres.inference.rundata import load_run_data

    cli = Path(sys.executable).parent / "cxrres"
    run = tmp_path / "ddp"
    command = [
        str(cli),
        "train",
        "--data",
        phantom,
        "--resolution",
        "32",
        "--weights",
        "none",
        "--out",
        str(run),
        "--cache",
        str(tmp_path / "cache"),
        "--max-epochs",
        "1",
        "--batch-size",
        "8",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    logged = pd.read_csv(run / "metrics.csv")["val_mean_auc"].iloc[0]
    model, config, _ = load_run_model(run)  # one epoch: best == last
    data = load_run_data(resolve(TrainConfig(**{**config.__dict__, "progress": False})))
    scores = predict(model, data.parts["val"], config, torch.device("cpu"))
    labels = data.parts["val"].labels.numpy()
    keep = defined_classes(labels)
    expected = np.mean([metrics.auc(labels[:, c], scores[:, c]) for c in np.flatnonzero(keep)])
    assert logged == pytest.approx(expected, abs=1e-5)


def test_masked_bce_is_the_bce_of_the_kept_labels():
    from cxrres.training.module import masked_bce

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=generator)
    labels = torch.tensor([[1, 0, -1], [0, -1, 1], [1, 1, 0], [-1, -1, -1], [0, 0, 1], [1, -1, 0]], dtype=torch.float32)
    elementwise = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    losses, counts = masked_bce(elementwise, labels)
    kept = labels >= 0
    assert counts.tolist() == [2, 2, 3, 0, 3, 2]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[kept], labels[kept])
    assert float((losses * counts).sum() / counts.sum()) == pytest.approx(float(expected), rel=1e-6)
    assert float(losses[3]) == 0.0  # an image with every label masked adds nothing
    # with nothing masked it is the plain mean over classes
    full = torch.ones(6, 3)
    assert torch.allclose(masked_bce(elementwise, full)[0], elementwise.mean(dim=1))


def test_validation_auc_leaves_masked_labels_out(tmp_path):
    config = resolve(_config(str(tmp_path), tmp_path / "r", accelerator="cpu"))
    module = ChestClassifier(config, ["A", "B"], np.array([True, True]), masked=True)
    probs = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.3, 0.1], [0.6, 0.9], [0.2, 0.3]])
    labels = torch.tensor([[1, -1], [0, 1], [1, 0], [-1, 0], [0, -1], [0, 1]])
    module.val_auc.update(probs, labels)
    aucs = module.val_auc.compute().tolist()
    # kept rows by hand: A: positives 0.9, 0.7 vs negatives 0.1, 0.6, 0.2 -> 6/6;
    # B: positives 0.8, 0.3 vs 0.6, 0.1 -> 3/4
    assert aucs == pytest.approx([1.0, 0.75])
