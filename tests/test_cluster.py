"""cxrres study --executor slurm: the generated sbatch scripts (exact #SBATCH lines, array size, dependencies), the
submission record, job states and --wait's verdict against fake SLURM commands, and a tiny phantom study through a
real SLURM (`make slurm-local`) when one is up."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cxrres import runs
from cxrres.study import slurm as cluster
from cxrres.cli import main
from cxrres.study.slurm import SlurmOptions, Submission, slurm_options
from cxrres.study.slurm import queue
from cxrres.errors import CxrresError
from cxrres.study.grid import make_study


def _study(tmp_path: Path, **train):
    """A 2-run study (32 and 48 px) on a data root that need not exist."""
    return make_study(
        {
            "data": str(tmp_path / "phantom"),
            "out": str(tmp_path / "s"),
            "resolutions": "32,48",
            "train": {"weights": "none", "max_epochs": 1, **train},
        }
    )


def _header(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def _mark_trained(study, name: str) -> None:
    run_dir = Path(study.out) / runs.STUDY_RUNS / name
    run_dir.mkdir(parents=True)
    runs.write_status(run_dir, runs.RunStatus(status="finished", epochs=1))
    (run_dir / runs.PREDICTIONS).write_text("image\n")


# --- options ------------------------------------------------------------------------------------------------------


def test_options_flags_override_the_study_file_and_extra_lines_get_the_sbatch_prefix():
    options = slurm_options(
        {"partition": "cpu", "mem": "8G", "sbatch_extra": "--qos=long"},
        {
            "partition": "gpu",
            "gpus_per_run": 2,
            "mem": None,
            "sbatch_extra": ["#SBATCH --constraint=a100", "--exclusive"],
        },
    )
    assert options == SlurmOptions(
        partition="gpu", gpus_per_run=2, mem="8G", sbatch_extra=("#SBATCH --constraint=a100", "#SBATCH --exclusive")
    )
    assert cluster.options_mapping(options) == {
        "partition": "gpu",
        "gpus_per_run": 2,
        "mem": "8G",
        "sbatch_extra": ["#SBATCH --constraint=a100", "#SBATCH --exclusive"],
    }
    with pytest.raises(CxrresError, match="unknown slurm setting 'gpus'"):
        slurm_options({"gpus": 1})
    with pytest.raises(CxrresError, match="gpus_per_run must be >= 0"):
        slurm_options({}, {"gpus_per_run": -1})


# --- the scripts --------------------------------------------------------------------------------------------------


def test_train_script_one_task_per_unfinished_run_with_exact_sbatch_lines(tmp_path):
    study = _study(tmp_path)
    options = SlurmOptions(
        partition="gpu",
        gpus_per_run=2,
        cpus_per_run=16,
        mem="32G",
        time="24:00:00",
        account="lab",
        sbatch_extra=("#SBATCH --qos=long",),
    )
    logs = Path(study.out) / "slurm" / "logs"
    script, names = cluster.train_script(
        study, options, dependency="afterok:41", python="/venv/bin/python", pythonpath="/src", workdir=tmp_path
    )
    assert names == ["densenet121_32px_seed0", "densenet121_48px_seed0"]
    assert _header(script) == [
        "#SBATCH --job-name=cxrres-train-s",
        f"#SBATCH --output={logs}/train_%A_%a.out",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={tmp_path}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --array=0-1",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH --time=24:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --dependency=afterok:41",
        "#SBATCH --kill-on-invalid-dep=yes",
        "#SBATCH --requeue",
        "#SBATCH --signal=USR1@90",
        "#SBATCH --qos=long",
    ]
    assert (
        script.startswith("#!/bin/bash\n")
        and "export PYTHONPATH=/src" in script
        and "PYTHON=/venv/bin/python" in script
    )
    tasks = [line for line in script.splitlines() if line.lstrip().startswith(("0)", "1)"))]
    assert len(tasks) == 2
    assert "--resolution 48" in tasks[1] and "--devices 2" in tasks[1] and "--weights none" in tasks[1]
    assert f"--out {study.out}/runs/densenet121_48px_seed0" in tasks[1] and tasks[1].rstrip().endswith("--quiet ;;")
    assert script.rstrip().endswith('srun --kill-on-bad-exit=1 "$PYTHON" -m cxrres.cli "$@"')
    bash = shutil.which("bash")
    if bash:
        assert subprocess.run([bash, "-n"], input=script, text=True).returncode == 0  # valid shell


def test_trained_runs_are_left_out_and_cpu_runs_ask_for_no_gpu(tmp_path):
    study = _study(tmp_path)
    _mark_trained(study, "densenet121_32px_seed0")
    script, names = cluster.train_script(study, SlurmOptions(), python="py", workdir=tmp_path)
    assert names == ["densenet121_48px_seed0"]
    header = _header(script)
    assert "#SBATCH --array=0-0" in header and "#SBATCH --ntasks-per-node=1" in header
    assert not any("gpus" in line or "cpus-per-task" in line or "dependency" in line for line in header)
    assert "--devices" not in script
    _mark_trained(study, "densenet121_48px_seed0")
    assert cluster.train_script(study, SlurmOptions(), python="py") == ("", [])


def test_report_script_runs_the_study_after_the_array_on_one_gpu(tmp_path):
    study = _study(tmp_path)
    script = cluster.report_script(
        study,
        SlurmOptions(gpus_per_run=4, time="2:00:00"),
        dependency="afterok:42",
        python="/venv/bin/python",
        workdir=tmp_path,
    )
    header = _header(script)
    assert "#SBATCH --gpus-per-node=1" in header and "#SBATCH --dependency=afterok:42" in header
    assert "#SBATCH --kill-on-invalid-dep=yes" in header and "#SBATCH --time=2:00:00" in header
    assert not any("signal" in line or "array" in line for line in header)
    last = script.rstrip().splitlines()[-1]
    assert last.startswith('"$PYTHON" -m cxrres.cli study --data ') and "--resolutions 32,48" in last
    assert f"--config {study.out}/study.yaml" in last and last.endswith("--quiet")


# --- submitting against fake SLURM commands ------------------------------------------------------------------------


def _fake_slurm(tmp_path: Path, monkeypatch, sbatch_body: str, squeue_out: str = "") -> Path:
    """A PATH holding only fake sbatch and squeue (no sacct, no scontrol); sbatch logs its calls to calls.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("sbatch", sbatch_body), ("squeue", f"/bin/cat <<'EOF'\n{squeue_out}EOF\n")):
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


COUNTING_SBATCH = """n=$(( $(/usr/bin/wc -l < "$0.calls" 2>/dev/null || echo 0) + 100 ))
echo "$*" >> "$0.calls"
echo "$n;cluster\""""


def test_submit_chains_prepare_train_report_and_records_the_ids(tmp_path, monkeypatch, capsys):
    if not Path("/usr/bin/wc").exists():
        pytest.skip("no /usr/bin/wc for the fake sbatch")
    bin_dir = _fake_slurm(tmp_path, monkeypatch, COUNTING_SBATCH)
    study = _study(tmp_path)
    submission = cluster.submit_study(study, slurm_options({}, {"cpus_per_run": 2}))
    assert (submission.prepare, submission.train, submission.report) == ("100", "101", "102")
    assert submission.runs == ["densenet121_32px_seed0", "densenet121_48px_seed0"]
    folder = Path(study.out) / "slurm"
    calls = (bin_dir / "sbatch.calls").read_text().splitlines()
    assert calls == [f"--parsable {folder / name}" for name in ("prepare.sbatch", "train.sbatch", "report.sbatch")]
    assert "#SBATCH --dependency=afterok:100" in _header((folder / "train.sbatch").read_text())
    assert "#SBATCH --dependency=afterok:101" in _header((folder / "report.sbatch").read_text())
    assert not any("dependency" in line for line in _header((folder / "prepare.sbatch").read_text()))
    record = json.loads((folder / "jobs.json").read_text())
    assert len(record) == 1 and record[0]["train"] == "101" and record[0]["runs"] == submission.runs
    out = capsys.readouterr().out
    assert "train array 101 (2 runs)" in out and "101_1          densenet121_48px_seed0" in out
    assert "slurm:\n  cpus_per_run: 2\n" in (Path(study.out) / "study.yaml").read_text()  # the options are kept

    # a second submission while jobs are queued is refused; --dry-run shows each run's state with its job id
    _fake_slurm(
        tmp_path,
        monkeypatch,
        COUNTING_SBATCH,
        squeue_out="100|COMPLETING\n101_0|RUNNING\n101_[1]|PENDING\n102|PENDING\n",
    )
    with pytest.raises(
        CxrresError, match="jobs 100, 101_0, 101_1, 102 of the last submission are still queued or running"
    ):
        cluster.submit_study(study, SlurmOptions())
    text = cluster.describe_jobs(study)
    assert "densenet121_32px_seed0                 running  job 101_0" in text
    assert "densenet121_48px_seed0                 queued   job 101_1" in text
    assert "report                                 queued   job 102 (afterok:101)" in text


def test_sbatch_refusal_is_one_line_with_what_sbatch_said(tmp_path, monkeypatch, capsys):
    _fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: invalid partition specified: gpu" >&2\nexit 1')
    study = _study(tmp_path)
    args = ["study", "--data", study.data, "--out", study.out, "--resolutions", "32,48", "--executor", "slurm"]
    assert main(args + ["--partition", "gpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cxrres study: error: sbatch refused ")
    assert err[0].endswith("prepare.sbatch: sbatch: error: invalid partition specified: gpu")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert main(args) == 1
    assert "sbatch not found: SLURM's client commands are not installed here" in capsys.readouterr().err


def test_states_queued_running_done_failed_and_the_verdict_of_wait(tmp_path, monkeypatch):
    study = _study(tmp_path)
    submission = Submission(0.0, "100", "101", "102", ["densenet121_32px_seed0", "densenet121_48px_seed0"])
    assert queue._expand("101_[0-2,5%2]") == ["101_0", "101_1", "101_2", "101_5"]
    assert queue._parse_pairs("101_0|CANCELLED by 0\n101_[1-2]|PENDING\n99|RUNNING\n", {"101"}) == {
        "101_0": "CANCELLED",
        "101_1": "PENDING",
        "101_2": "PENDING",
    }
    _mark_trained(study, "densenet121_32px_seed0")
    rows = cluster.submission_lines(
        study, submission, {"100": "COMPLETED", "101_0": "COMPLETED", "101_1": "FAILED", "102": "CANCELLED"}
    )
    assert [(what, word) for what, word, _ in rows] == [
        ("prepare", "done"),
        ("densenet121_32px_seed0", "done"),
        ("densenet121_48px_seed0", "failed"),
        ("report", "failed"),
    ]
    # SLURM forgot every job (no sacct): a run without run.json `finished` failed, whatever its job said
    rows = cluster.submission_lines(study, submission, {})
    assert rows[2][1] == "failed" and "run.json: not started, 0 epochs" in rows[2][2]
    monkeypatch.setattr(
        queue,
        "job_states",
        lambda ids: {"100": "COMPLETED", "101_0": "COMPLETED", "101_1": "FAILED", "102": "CANCELLED"},
    )
    with pytest.raises(
        CxrresError,
        match=r"slurm jobs failed: densenet121_48px_seed0 job 101_1 \(FAILED\); "
        r"report job 102 \(afterok:101\) \(CANCELLED\)",
    ):
        cluster.wait_for(study, submission, poll_s=0, log=lambda line: None)


# --- a real SLURM ---------------------------------------------------------------------------------------------------


def _slurm_ready() -> str | None:
    """Why a real SLURM cannot take jobs here (None when a node is idle)."""
    for command in ("sbatch", "sinfo", "squeue"):
        if shutil.which(command) is None:
            return f"{command} not installed (run `make slurm-local` as root)"
    done = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return "sinfo failed: " + " ".join(done.stderr.split())
    if "idle" not in done.stdout.split() and "mixed" not in done.stdout.split():
        return f"no idle SLURM node (sinfo says: {' '.join(done.stdout.split()) or 'nothing'}); run `make slurm-local`"
    return None


@pytest.mark.skipif(_slurm_ready() is not None, reason=str(_slurm_ready()))
def test_tiny_study_through_a_real_slurm(tmp_path, capsys):
    from cxrres.synthetic import synthesize

    synthesize(tmp_path / "phantom", n_images=48, size_px=64, seed=3, workers=1, progress=False)
    config = tmp_path / "study.yaml"
    config.write_text(
        "train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\n  lr_patience: 1\n"
        "localize:\n  examples: 1\nn_boot: 100\nslurm:\n  cpus_per_run: 1\n"
    )
    args = [
        "study",
        "--data",
        str(tmp_path / "phantom"),
        "--resolutions",
        "32,48",
        "--out",
        str(tmp_path / "s"),
        "--config",
        str(config),
        "--executor",
        "slurm",
    ]
    assert main(args + ["--partition", "no-such-partition"]) == 1  # refused by the real sbatch: nothing submitted
    assert "sbatch refused" in capsys.readouterr().err and not (tmp_path / "s" / "slurm" / "jobs.json").exists()
    assert main(args + ["--wait"]) == 0
    out = capsys.readouterr().out
    assert "| mean AUC |" in out and f"report: {tmp_path / 's' / 'report.html'}" in out
    s = tmp_path / "s"
    for name in ("report.html", "key_results.md", "runs/densenet121_48px_seed0/localization.csv", "slurm/train.sbatch"):
        assert (s / name).is_file(), name
    submission = cluster.read_submissions(_reload(args))[-1]
    logs = sorted(p.name for p in (s / "slurm" / "logs").iterdir())
    assert f"train_{submission.train}_0.out" in logs and f"report_{submission.report}.out" in logs
    assert main(args[:-2] + ["--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert (
        dry.count("left: nothing") == 2
        and f"report                                 done     job {submission.report}" in dry
    )
    assert os.environ.get("PYTHONPATH", "") in (s / "slurm" / "train.sbatch").read_text()


def _reload(args: list[str]):
    """The StudyConfig of `cxrres study` arguments."""
    from cxrres.study.grid import GRID_FLAGS, study_settings

    flags = dict(zip(args[1::2], args[2::2]))
    return study_settings(flags["--config"], {name: flags.get(f"--{name}") for name in GRID_FLAGS})


def _rsna_with_a_duplicated_box_row(tmp_path):
    """An RSNA-layout phantom whose label file repeats one box row (a bad row that `skip_bad` leaves out), and a study
    file that asks for `skip_bad`."""
    from cxrres.synthetic import synthesize_layout

    root = tmp_path / "rsna"
    synthesize_layout("rsna", root, n_images=120, size_px=64, seed=3, workers=1, progress=False)
    labels = root / "stage_2_train_labels.csv"
    rows = labels.read_text().splitlines()
    boxed = next(r for r in rows[1:] if r.endswith(",1"))
    labels.write_text("\n".join(rows + [boxed]) + "\n")
    config = tmp_path / "study.yaml"
    config.write_text(
        "train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\n  skip_bad: true\n"
        "localize:\n  examples: 0\nn_boot: 50\nslurm:\n  cpus_per_run: 1\n"
    )
    return root, config


def test_the_slurm_prepare_job_carries_the_studys_data_settings(tmp_path, capsys):
    """The cluster's prepare job is `cxrres study --step prepare` with the study's own file: `skip_bad` (and every
    other data setting) reaches it through the function the local executor calls; a bare `cxrres prepare` fails."""
    root, config = _rsna_with_a_duplicated_box_row(tmp_path)
    args = ["study", "--data", str(root), "--resolutions", "32", "--out", str(tmp_path / "s"), "--config", str(config)]
    study = _reload(args)
    from cxrres.study.grid import write_study_file

    write_study_file(study)
    script = cluster.prepare_script(study, cluster.slurm_options(study.slurm, {}))
    command = next(line for line in script.splitlines() if "-m cxrres.cli" in line)
    assert "study" in command.split() and "--step prepare" in command and str(tmp_path / "s" / "study.yaml") in command
    assert main(["prepare", "--data", str(root), "--resolutions", "32", "--quiet"]) == 1  # the old job's command
    assert "duplicate of an earlier row" in capsys.readouterr().err
    assert main(args + ["--step", "prepare", "--quiet"]) == 0
    assert "images at 32 px" in capsys.readouterr().out


@pytest.mark.skipif(_slurm_ready() is not None, reason=str(_slurm_ready()))
def test_rsna_study_with_skip_bad_through_a_real_slurm(tmp_path, capsys):
    root, config = _rsna_with_a_duplicated_box_row(tmp_path)
    args = [
        "study",
        "--data",
        str(root),
        "--resolutions",
        "32",
        "--out",
        str(tmp_path / "s"),
        "--config",
        str(config),
        "--executor",
        "slurm",
        "--wait",
    ]
    assert main(args) == 0
    assert f"report: {tmp_path / 's' / 'report.html'}" in capsys.readouterr().out
    run = tmp_path / "s" / "runs" / "densenet121_32px_seed0"
    assert (tmp_path / "s" / "report.html").is_file() and (run / "localization.csv").is_file()
    assert "duplicate of an earlier row" in (run / "skipped_rows.txt").read_text()
