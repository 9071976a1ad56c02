"""`cxrres study --executor slurm`: the study as generated `sbatch` scripts — a prepare job, one array job with a
task per unfinished run (each the `cxrres train` line of `--plan`, under `srun`), and a report job that runs
`cxrres study` once every run is trained — plus where each job stands (squeue, sacct, scontrol, run.json).

Everything goes to STUDY/slurm/: the scripts (`prepare.sbatch`, `train.sbatch`, `report.sbatch`), `jobs.json` (every
submission: job ids and which array task trains which run) and `logs/`. No scheduler logic lives here: SLURM orders
the jobs (`--dependency=afterok`), requeues pre-empted ones (`--requeue`, Lightning's auto-requeue on `USR1`) and
keeps them apart; cxrres only writes the scripts, calls `sbatch` and reads the queue.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cxrres import runs
from cxrres.config import train_argv
from cxrres.errors import CxrresError
from cxrres.parallel import write_text_atomic
from cxrres.study import StudyConfig, run_configs, run_state, study_argv, write_study_file

SLURM_DIR = "slurm"  # STUDY/slurm/
SLURM_LOGS = "logs"  # STUDY/slurm/logs/
JOBS_FILE = "jobs.json"  # STUDY/slurm/jobs.json
PREPARE_SCRIPT = "prepare.sbatch"
TRAIN_SCRIPT = "train.sbatch"
REPORT_SCRIPT = "report.sbatch"

#: Seconds before its time limit that SLURM sends a training task USR1; Lightning then saves hpc_ckpt_N.ckpt into the
#: run directory and requeues the task (`scontrol requeue`), which resumes from checkpoints/last.ckpt.
REQUEUE_SIGNAL_S = 90

#: SLURM job states, grouped as `--dry-run` shows them.
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"})
FAILED_STATES = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                           "PREEMPTED", "SPECIAL_EXIT", "REVOKED"})
DONE_STATE = "COMPLETED"


@dataclass(frozen=True)
class SlurmOptions:
    """What each job asks SLURM for; None leaves a setting to the cluster's default."""

    partition: str | None = None
    gpus_per_run: int = 0  # GPUs per training run; the run trains with DDP over them (one srun task per GPU)
    cpus_per_run: int | None = None  # CPU cores per training run, split evenly over its tasks
    mem: str | None = None  # memory per node, SLURM syntax (e.g. 32G)
    time: str | None = None  # time limit per job, SLURM syntax (e.g. 24:00:00)
    account: str | None = None
    sbatch_extra: tuple[str, ...] = ()  # further `#SBATCH ...` lines, copied into every script


def slurm_options(mapping: dict[str, Any] | None, flags: dict[str, Any] | None = None) -> SlurmOptions:
    """SlurmOptions from the study file's `slurm:` mapping overridden by the flags that were given (None: not given)."""
    known = {f.name for f in dataclasses.fields(SlurmOptions)}
    merged = dict(mapping or {})
    bad = sorted(set(merged) - known)
    if bad:
        raise CxrresError(f"unknown slurm setting {bad[0]!r} in the study's `slurm:` mapping (known: {', '.join(sorted(known))})")
    merged.update({k: v for k, v in (flags or {}).items() if v is not None and v != ()})
    extra = merged.get("sbatch_extra") or ()
    extra = [extra] if isinstance(extra, str) else list(extra)
    lines = []
    for item in extra:
        for line in str(item).splitlines():
            line = line.strip()
            if line:
                lines.append(line if line.startswith("#SBATCH") else f"#SBATCH {line}")
    merged["sbatch_extra"] = tuple(lines)
    for key in ("gpus_per_run", "cpus_per_run"):
        if merged.get(key) is not None:
            merged[key] = int(merged[key])
            if merged[key] < (0 if key == "gpus_per_run" else 1):
                raise CxrresError(f"slurm setting {key} must be {'>= 0' if key == 'gpus_per_run' else '>= 1'}, got {merged[key]}")
    for key in ("partition", "mem", "time", "account"):
        if merged.get(key) is not None:
            merged[key] = str(merged[key])
    if merged.get("gpus_per_run") is None:
        merged["gpus_per_run"] = 0
    return SlurmOptions(**merged)


def options_mapping(options: SlurmOptions) -> dict[str, Any]:
    """The settings of `options` that are set, as the study file's `slurm:` mapping."""
    out = {k: v for k, v in dataclasses.asdict(options).items() if v not in (None, (), 0)}
    if "sbatch_extra" in out:
        out["sbatch_extra"] = list(out["sbatch_extra"])
    return out


# --- the scripts ------------------------------------------------------------------------------------------------


def slurm_dir(study: StudyConfig) -> Path:
    """STUDY/slurm/: scripts, jobs.json and logs of the study's SLURM submissions."""
    return Path(study.out) / SLURM_DIR


def tasks_per_node(study: StudyConfig, options: SlurmOptions) -> int:
    """Processes per node of one training run: one per GPU, or the study's `train.devices` on CPUs."""
    return options.gpus_per_run or int(study.train.get("devices", 1))


def _header(name: str, options: SlurmOptions, log: Path, workdir: Path, *, ntasks: int = 1, nodes: int = 1,
            gpus: int = 0, cpus: int | None = None, array: str | None = None, dependency: str | None = None,
            requeue_signal: bool = False) -> list[str]:
    """The #SBATCH lines of one job: name, log, resources, ordering, requeue."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", "#SBATCH --open-mode=append",
             f"#SBATCH --chdir={workdir}", f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={ntasks}"]
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
    lines += ['if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then',
              '  export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK" SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"',
              "fi",
              'echo "cxrres job ${SLURM_JOB_ID:-?} (array task ${SLURM_ARRAY_TASK_ID:-none}, restart ${SLURM_RESTART_COUNT:-0}) '
              'on $(hostname) at $(date -Is)"']
    return lines


def _job_name(study: StudyConfig, step: str) -> str:
    """cxrres-<step>-<study directory name>."""
    return f"cxrres-{step}-{Path(study.out).name}"


def prepare_script(study: StudyConfig, options: SlurmOptions, python: str = sys.executable,
                   pythonpath: str | None = None, workdir: Path | None = None) -> str:
    """The job that builds (or reuses) the resolution caches of every run before any run trains."""
    logs = slurm_dir(study) / SLURM_LOGS
    argv = ["prepare", "--data", study.data, "--resolutions", ",".join(map(str, study.resolutions)), "--quiet"]
    if study.train.get("cache"):
        argv += ["--cache", str(study.train["cache"])]
    lines = _header(_job_name(study, "prepare"), options, logs / "prepare_%j.out", workdir or Path.cwd(),
                    cpus=options.cpus_per_run)
    lines += _environment(python, pythonpath)
    lines.append('"$PYTHON" -m cxrres.cli ' + " ".join(shlex.quote(a) for a in argv) + ' --workers "${SLURM_CPUS_PER_TASK:-1}"')
    return "\n".join(lines) + "\n"


def train_script(study: StudyConfig, options: SlurmOptions, dependency: str | None = None, python: str = sys.executable,
                 pythonpath: str | None = None, workdir: Path | None = None) -> tuple[str, list[str]]:
    """The array job: task i trains the i-th unfinished run (its `cxrres train` line under srun). Returns the script
    and the run names in task order; ("", []) when every run is trained."""
    todo = [c for c in run_configs(study) if not run_state(c).trained]
    if not todo:
        return "", []
    ntasks = tasks_per_node(study, options)
    nodes = int(study.train.get("nodes", 1))
    logs = slurm_dir(study) / SLURM_LOGS
    lines = _header(_job_name(study, "train"), options, logs / "train_%A_%a.out", workdir or Path.cwd(), ntasks=ntasks,
                    nodes=nodes, gpus=options.gpus_per_run, cpus=options.cpus_per_run, array=f"0-{len(todo) - 1}",
                    dependency=dependency, requeue_signal=True)
    lines += _environment(python, pythonpath)
    lines += ["", 'case "$SLURM_ARRAY_TASK_ID" in']
    names = []
    for i, config in enumerate(todo):
        if options.gpus_per_run:
            config.devices = options.gpus_per_run
        names.append(Path(config.out).name)
        argv = ["train", *train_argv(config), "--quiet"]
        lines.append(f"  {i}) RUN={shlex.quote(names[-1])}; set -- {' '.join(shlex.quote(a) for a in argv)} ;;")
    lines += ['  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac",
              'echo "run $RUN: cxrres $*"',
              "# srun starts one process per GPU (Lightning reads SLURM_PROCID etc.) and passes USR1 on to them",
              'srun --kill-on-bad-exit=1 "$PYTHON" -m cxrres.cli "$@"']
    return "\n".join(lines) + "\n", names


def report_script(study: StudyConfig, options: SlurmOptions, dependency: str | None = None, python: str = sys.executable,
                  pythonpath: str | None = None, workdir: Path | None = None) -> str:
    """The job that evaluates, localizes, compares and writes the report: `cxrres study` with the study's settings,
    run once every run is trained (it trains nothing then)."""
    logs = slurm_dir(study) / SLURM_LOGS
    lines = _header(_job_name(study, "report"), options, logs / "report_%j.out", workdir or Path.cwd(),
                    gpus=min(1, options.gpus_per_run), cpus=options.cpus_per_run, dependency=dependency)
    lines += _environment(python, pythonpath)
    argv = ["study", *study_argv(study), "--quiet"]
    lines.append('"$PYTHON" -m cxrres.cli ' + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


# --- submitting ---------------------------------------------------------------------------------------------------


def _command(argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run a SLURM client command; CxrresError when it is not installed."""
    if shutil.which(argv[0]) is None:
        raise CxrresError(f"{argv[0]} not found: SLURM's client commands are not installed here (make slurm-local starts "
                          f"a one-node SLURM on this machine)")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)


def sbatch(script: Path) -> str:
    """Submit `script`; its job id. CxrresError with sbatch's own words when SLURM refuses it."""
    done = _command(["sbatch", "--parsable", str(script)])
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise CxrresError(f"sbatch refused {script}: {said}")
    return done.stdout.strip().splitlines()[-1].split(";")[0]


def _cancel(job_ids: Iterable[str]) -> None:
    """scancel jobs this submission already queued (when a later sbatch fails)."""
    ids = list(job_ids)
    if ids and shutil.which("scancel"):
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


@dataclass
class Submission:
    """One `cxrres study --executor slurm`: its job ids and the run each array task trains."""

    submitted: float  # seconds since the epoch
    prepare: str | None
    train: str | None
    report: str
    runs: list[str]  # task i of the train array trains runs[i]

    def job_ids(self) -> list[str]:
        """The ids of its jobs, in order."""
        return [j for j in (self.prepare, self.train, self.report) if j]

    def task_ids(self) -> list[str]:
        """<array id>_<task> of every training task."""
        return [f"{self.train}_{i}" for i in range(len(self.runs))] if self.train else []


def read_submissions(study: StudyConfig) -> list[Submission]:
    """Every submission of the study, oldest first (STUDY/slurm/jobs.json; empty when there is none)."""
    path = slurm_dir(study) / JOBS_FILE
    if not path.is_file():
        return []
    known = {f.name for f in dataclasses.fields(Submission)}
    return [Submission(**{k: v for k, v in item.items() if k in known}) for item in json.loads(path.read_text())]


def _record(study: StudyConfig, submission: Submission) -> None:
    """Append `submission` to STUDY/slurm/jobs.json (atomically)."""
    path = slurm_dir(study) / JOBS_FILE
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append(dataclasses.asdict(submission) | {"submitted_local": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                                                      time.localtime(submission.submitted))})
    write_text_atomic(path, json.dumps(history, indent=1) + "\n")


def submit_study(study: StudyConfig, options: SlurmOptions, log: Callable[[str], None] = print) -> Submission:
    """Write the scripts into STUDY/slurm/ and submit: prepare, the train array (afterok:prepare), the report
    (afterok:train). Refuses while an earlier submission of the study still has jobs queued or running."""
    earlier = read_submissions(study)
    if earlier:
        active = [j for j, s in job_states(earlier[-1].job_ids() + earlier[-1].task_ids()).items()
                  if s in QUEUED_STATES | RUNNING_STATES]
        if active:
            raise CxrresError(f"jobs {', '.join(sorted(active))} of the last submission are still queued or running "
                              f"(wait for them, or scancel them and submit again)")
    if options.gpus_per_run:
        devices = study.train.get("devices")
        if devices not in (None, options.gpus_per_run):
            raise CxrresError(f"train.devices is {devices} but --gpus-per-run is {options.gpus_per_run}; they must agree")
        study.train["devices"] = options.gpus_per_run  # part of each run's identity, as `cxrres train --devices`
    study.slurm = options_mapping(options)
    write_study_file(study)
    folder = slurm_dir(study)
    (folder / SLURM_LOGS).mkdir(parents=True, exist_ok=True)
    common = {"python": sys.executable, "pythonpath": os.environ.get("PYTHONPATH") or None, "workdir": Path.cwd()}
    submitted, started = [], time.time()
    try:
        prepare_id = train_id = None
        text, names = train_script(study, options, **common)
        if names:
            write_text_atomic(folder / PREPARE_SCRIPT, prepare_script(study, options, **common))
            prepare_id = sbatch(folder / PREPARE_SCRIPT)
            submitted.append(prepare_id)
            text, names = train_script(study, options, dependency=f"afterok:{prepare_id}", **common)
            write_text_atomic(folder / TRAIN_SCRIPT, text)
            train_id = sbatch(folder / TRAIN_SCRIPT)
            submitted.append(train_id)
        write_text_atomic(folder / REPORT_SCRIPT, report_script(study, options, f"afterok:{train_id}" if train_id else None,
                                                                **common))
        report_id = sbatch(folder / REPORT_SCRIPT)
    except BaseException:
        _cancel(submitted)
        raise
    submission = Submission(started, prepare_id, train_id, report_id, names)
    _record(study, submission)
    if train_id:
        log(f"submitted: prepare job {prepare_id}; train array {train_id} ({len(names)} run{'s' * (len(names) != 1)}); "
            f"report job {report_id} (afterok:{train_id})")
        for task, name in zip(submission.task_ids(), names):
            log(f"  {task:<14} {name}")
    else:
        log(f"submitted: report job {report_id} (every run is trained)")
    log(f"scripts, jobs.json and logs in {folder}")
    return submission


# --- where the jobs stand -----------------------------------------------------------------------------------------


def _expand(job_id: str) -> list[str]:
    """'13_[0-2,5%2]' -> ['13_0', '13_1', '13_2', '13_5']; other ids unchanged."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _from_squeue(wanted: set[str]) -> dict[str, str]:
    """States of the wanted jobs that are still in the queue (one line per array task)."""
    if shutil.which("squeue") is None:
        return {}
    done = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T", "--jobs", ",".join(sorted(wanted))],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:  # e.g. every id has left the queue: "Invalid job id specified"
        return {}
    return _parse_pairs(done.stdout, wanted)


def _parse_pairs(text: str, wanted: set[str]) -> dict[str, str]:
    """'id|STATE ...' lines (squeue, sacct) -> {id: STATE} for wanted ids and tasks of wanted arrays."""
    states = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        state = state.split("|")[0].split()[0] if state.strip() else ""
        for one in _expand(job):
            if one in wanted or one.split("_")[0] in wanted:
                states[one] = state.rstrip("+")
    return states


def _from_sacct(wanted: set[str]) -> dict[str, str]:
    """States from the accounting database; empty when sacct is missing or accounting is off."""
    if shutil.which("sacct") is None:
        return {}
    done = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                           "--jobs", ",".join(sorted(wanted))], capture_output=True, text=True, timeout=60)
    return _parse_pairs(done.stdout, wanted) if done.returncode == 0 else {}


def _from_scontrol(wanted: set[str]) -> dict[str, str]:
    """States of jobs the controller still remembers (finished ones for MinJobAge seconds)."""
    if shutil.which("scontrol") is None:
        return {}
    states = {}
    for job in sorted({j.split("_")[0] for j in wanted}):
        done = subprocess.run(["scontrol", "--oneliner", "show", "job", job], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            continue
        for line in done.stdout.splitlines():
            fields = dict(item.partition("=")[::2] for item in line.split())
            state = fields.get("JobState", "")
            if fields.get("ArrayTaskId"):
                for one in _expand(f"{fields.get('ArrayJobId', job)}_[{fields['ArrayTaskId']}]"):
                    states[one] = state
            elif "JobId" in fields:
                states[fields["JobId"]] = state
    return states


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM's state (PENDING, RUNNING, COMPLETED, FAILED, ...) of each job or array task (<id>_<task>) it knows:
    scontrol, then sacct, then squeue, each later one overriding."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    states = _from_scontrol(wanted)
    states.update(_from_sacct(wanted))
    states.update(_from_squeue(wanted))
    return {k: v for k, v in states.items() if k in wanted or k.split("_")[0] in wanted}


def _word(state: str | None) -> str:
    """queued / running / done / failed / ended for a SLURM state (None: SLURM no longer knows the job)."""
    if state is None:
        return "ended"
    if state in QUEUED_STATES:
        return "queued"
    if state in RUNNING_STATES:
        return "running"
    if state == DONE_STATE:
        return "done"
    return "failed" if state in FAILED_STATES else state.lower()


def submission_lines(study: StudyConfig, submission: Submission, states: dict[str, str]) -> list[tuple[str, str, str]]:
    """(what, queued/running/done/failed, job id and detail) for the prepare job, every run and the report job.
    A run counts as done when its run.json says so; a job SLURM no longer knows is judged by the files."""
    rows: list[tuple[str, str, str]] = []
    configs = {Path(c.out).name: c for c in run_configs(study)}
    if submission.prepare:
        word = _word(states.get(submission.prepare))
        if word == "ended":  # SLURM forgot it: it worked if the runs it was for are trained
            word = "done" if all(n in configs and run_state(configs[n]).trained for n in submission.runs) else "failed"
        rows.append(("prepare", word, submission.prepare))
    for task, name in zip(submission.task_ids(), submission.runs):
        state = states.get(task)
        trained = name in configs and run_state(configs[name]).trained
        word = "done" if trained else _word(state)
        if word in ("ended", "done") and not trained:  # gone from SLURM's memory, or COMPLETED without finishing
            status = runs.read_status(Path(study.out) / runs.STUDY_RUNS / name)
            word, detail = "failed", f"{task} ({state or 'ended'}; run.json: {status.status}, {status.epochs} epochs)"
        else:
            detail = task + (f" ({state})" if word == "failed" else "")
        rows.append((name, word, detail))
    report = Path(study.out) / runs.REPORT_HTML
    word = _word(states.get(submission.report))
    if word == "ended":
        word = "done" if report.is_file() and report.stat().st_mtime >= submission.submitted else "failed"
    detail = submission.report + (f" (afterok:{submission.train})" if submission.train else "")
    if word == "failed" and states.get(submission.report):
        detail += f" ({states[submission.report]})"
    rows.append(("report", word, detail))
    return rows


def describe_jobs(study: StudyConfig) -> str | None:
    """`--dry-run`'s SLURM section: the last submission, per job and per run queued / running / done / failed with
    its job id; None when the study was never submitted."""
    submissions = read_submissions(study)
    if not submissions:
        return None
    last = submissions[-1]
    states = job_states(last.job_ids() + last.task_ids())
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.submitted))
    lines = [f"slurm: submitted {when} ({slurm_dir(study) / JOBS_FILE})"]
    lines += [f"  {what:<38} {word:<8} job {detail}" for what, word, detail in submission_lines(study, last, states)]
    return "\n".join(lines)


def wait_for(study: StudyConfig, submission: Submission, poll_s: float = 2.0, log: Callable[[str], None] = print) -> None:
    """Block until the report job has ended; CxrresError naming each failed job (and its log) if any failed."""
    last_line = ""
    while True:
        states = job_states(submission.job_ids() + submission.task_ids())
        rows = submission_lines(study, submission, states)
        active = [r for r in rows if r[1] in ("queued", "running")]
        line = ", ".join(f"{word} {sum(r[1] == word for r in rows)}" for word in ("queued", "running", "done", "failed")
                         if any(r[1] == word for r in rows))
        if line != last_line:
            log(f"slurm: {line}")
            last_line = line
        if not active:
            break
        time.sleep(poll_s)
    failed = [r for r in rows if r[1] != "done"]
    if failed:
        logs = slurm_dir(study) / SLURM_LOGS
        raise CxrresError("slurm jobs failed: " + "; ".join(f"{what} job {detail}" for what, _, detail in failed)
                          + f" (logs in {logs})")
