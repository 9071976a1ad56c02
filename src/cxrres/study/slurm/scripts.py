"""The text of the sbatch scripts of `cxrres study --executor slurm` (pure: nothing here talks to SLURM): a prepare
job, one array job with a task per unfinished run (each the `cxrres train` line of `--plan`, under `srun`), and a report
job that runs `cxrres study` once every run is trained. docs/cluster.md."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from cxrres import runs
from cxrres.study.grid import SlurmOptions, StudyConfig
from cxrres.study.plan import study_plan

SLURM_DIR = runs.SLURM  # STUDY/slurm/
SLURM_LOGS = runs.LOGS  # STUDY/slurm/logs/
JOBS_FILE = runs.SLURM_JOBS  # STUDY/slurm/jobs.json
PREPARE_SCRIPT = "prepare.sbatch"
TRAIN_SCRIPT = "train.sbatch"
REPORT_SCRIPT = "report.sbatch"

#: Seconds before its time limit that SLURM sends a training task USR1; Lightning then saves hpc_ckpt_N.ckpt into the
#: run directory and requeues the task (`scontrol requeue`), which resumes from checkpoints/last.ckpt.
REQUEUE_SIGNAL_S = 90


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `cxrres study` that set SlurmOptions (one per field; they override the study file's `slurm:`)."""
    parser.add_argument("--partition", metavar="P", help="slurm: partition")
    parser.add_argument(
        "--gpus-per-run", type=int, metavar="N", help="slurm: GPUs per training run (DDP over them; default 0)"
    )
    parser.add_argument("--cpus-per-run", type=int, metavar="N", help="slurm: CPU cores per training run")
    parser.add_argument("--mem", metavar="SIZE", help="slurm: memory per job and node, e.g. 32G")
    parser.add_argument("--time", metavar="D-HH:MM:SS", help="slurm: time limit per job, e.g. 24:00:00")
    parser.add_argument("--account", metavar="A", help="slurm: account to charge")
    parser.add_argument(
        "--sbatch-extra",
        action="append",
        metavar="LINE",
        help="slurm: an extra '#SBATCH ...' line for every job (repeatable)",
    )


# --- the scripts ------------------------------------------------------------------------------------------------


def slurm_dir(study: StudyConfig) -> Path:
    """STUDY/slurm/: scripts, jobs.json and logs of the study's SLURM submissions."""
    return Path(study.out) / SLURM_DIR


def tasks_per_node(study: StudyConfig, options: SlurmOptions) -> int:
    """Processes per node of one training run: one per GPU, or the study's `train.devices` on CPUs."""
    return options.gpus_per_run or int(study.train.get("devices", 1))


def _header(
    name: str,
    options: SlurmOptions,
    log: Path,
    workdir: Path,
    *,
    ntasks: int = 1,
    nodes: int = 1,
    gpus: int = 0,
    cpus: int | None = None,
    array: str | None = None,
    dependency: str | None = None,
    requeue_signal: bool = False,
) -> list[str]:
    """The #SBATCH lines of one job: name, log, resources, ordering, requeue."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --output={log}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={workdir}",
        f"#SBATCH --nodes={nodes}",
        f"#SBATCH --ntasks-per-node={ntasks}",
    ]
    if array is not None:
        lines.append(f"#SBATCH --array={array}")
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    if cpus is not None:
        lines.append(f"#SBATCH --cpus-per-task={max(1, cpus // ntasks)}")
    for key, flag in (("mem", "mem"), ("time", "time"), ("partition", "partition"), ("account", "account")):
        value = getattr(options, key)
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    if dependency is not None:
        lines += [f"#SBATCH --dependency={dependency}", "#SBATCH --kill-on-invalid-dep=yes"]
    lines.append("#SBATCH --requeue")
    if requeue_signal:
        lines.append(f"#SBATCH --signal=USR1@{REQUEUE_SIGNAL_S}")
    lines += list(options.sbatch_extra)
    return lines


def _environment(python: str, pythonpath: str | None) -> list[str]:
    """Shell lines every job runs first: strict mode, the submitter's interpreter and PYTHONPATH, threads = cores."""
    lines = ["", "set -euo pipefail", f"PYTHON={shlex.quote(python)}"]
    if pythonpath:
        lines.append(f"export PYTHONPATH={shlex.quote(pythonpath)}")
    lines += [
        'if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then',
        '  export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK" SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"',
        "fi",
        'echo "cxrres job ${SLURM_JOB_ID:-?} (array task ${SLURM_ARRAY_TASK_ID:-none}, restart '
        "${SLURM_RESTART_COUNT:-0}) "
        'on $(hostname) at $(date -Is)"',
    ]
    return lines


def _job_name(study: StudyConfig, step: str) -> str:
    """cxrres-<step>-<study directory name>."""
    return f"cxrres-{step}-{Path(study.out).name}"


def prepare_script(
    study: StudyConfig,
    options: SlurmOptions,
    python: str = sys.executable,
    pythonpath: str | None = None,
    workdir: Path | None = None,
) -> str:
    """The job that builds (or reuses) the resolution caches of every run before any run trains: `cxrres study --step
    prepare` with the study's own settings, so the data settings (data set, views, split, readers, --skip-bad, cache)
    reach it through the function the local executor calls (`study.prepare_source`)."""
    logs = slurm_dir(study) / SLURM_LOGS
    (step,) = study_plan(study, kinds=("prepare",))
    lines = _header(
        _job_name(study, "prepare"), options, logs / "prepare_%j.out", workdir or Path.cwd(), cpus=options.cpus_per_run
    )
    lines += _environment(python, pythonpath)
    lines.append('"$PYTHON" -m cxrres.cli ' + _quoted([*step.argv(), "--quiet"]))
    return "\n".join(lines) + "\n"


def _quoted(argv: list[str]) -> str:
    """Arguments as one shell-quoted string."""
    return " ".join(shlex.quote(a) for a in argv)


def train_script(
    study: StudyConfig,
    options: SlurmOptions,
    dependency: str | None = None,
    python: str = sys.executable,
    pythonpath: str | None = None,
    workdir: Path | None = None,
) -> tuple[str, list[str]]:
    """The array job: task i trains the i-th unfinished run (its `cxrres train` line under srun). Returns the script
    and the run names in task order; ("", []) when every run is trained."""
    todo = [step for step in study_plan(study, kinds=("train",)) if not step.done and step.config is not None]
    if not todo:
        return "", []
    ntasks = tasks_per_node(study, options)
    nodes = int(study.train.get("nodes", 1))
    logs = slurm_dir(study) / SLURM_LOGS
    lines = _header(
        _job_name(study, "train"),
        options,
        logs / "train_%A_%a.out",
        workdir or Path.cwd(),
        ntasks=ntasks,
        nodes=nodes,
        gpus=options.gpus_per_run,
        cpus=options.cpus_per_run,
        array=f"0-{len(todo) - 1}",
        dependency=dependency,
        requeue_signal=True,
    )
    lines += _environment(python, pythonpath)
    lines += ["", 'case "$SLURM_ARRAY_TASK_ID" in']
    names = []
    for i, step in enumerate(todo):
        if options.gpus_per_run:  # a run trains with DDP over its GPUs: part of its identity, as `--devices N`
            step = dataclasses.replace(step, config=dataclasses.replace(step.config, devices=options.gpus_per_run))
        names.append(Path(str(step.run)).name)
        lines.append(f"  {i}) RUN={shlex.quote(names[-1])}; set -- {_quoted([*step.argv(), '--quiet'])} ;;")
    lines += [
        '  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        'echo "run $RUN: cxrres $*"',
        "# srun starts one process per GPU (Lightning reads SLURM_PROCID etc.) and passes USR1 on to them",
        'srun --kill-on-bad-exit=1 "$PYTHON" -m cxrres.cli "$@"',
    ]
    return "\n".join(lines) + "\n", names


def report_script(
    study: StudyConfig,
    options: SlurmOptions,
    dependency: str | None = None,
    python: str = sys.executable,
    pythonpath: str | None = None,
    workdir: Path | None = None,
) -> str:
    """The job that evaluates, localizes, compares and writes the report: `cxrres study` with the study's settings,
    run once every run is trained (it trains nothing then)."""
    logs = slurm_dir(study) / SLURM_LOGS
    lines = _header(
        _job_name(study, "report"),
        options,
        logs / "report_%j.out",
        workdir or Path.cwd(),
        gpus=min(1, options.gpus_per_run),
        cpus=options.cpus_per_run,
        dependency=dependency,
    )
    lines += _environment(python, pythonpath)
    (step,) = study_plan(study, kinds=("report",))
    lines.append('"$PYTHON" -m cxrres.cli ' + _quoted([*step.argv(), "--quiet"]))
    return "\n".join(lines) + "\n"


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor and the SLURM settings of `cxrres study` (flags override the study file's `slurm:` mapping)."""
    from cxrres.study.grid import EXECUTORS

    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: train here, one run after another; slurm: submit sbatch jobs (docs/cluster.md) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="slurm: block until the report is written; fail if a job failed"
    )
    add_slurm_arguments(parser)
