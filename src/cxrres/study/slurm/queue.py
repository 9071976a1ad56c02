"""Everything that talks to SLURM for `cxrres study --executor slurm`: submit the scripts (`sbatch`), record the job
ids in STUDY/slurm/jobs.json, read where the jobs stand (squeue, sacct, scontrol, with run.json as the fallback), and
wait for the report job. No scheduling logic lives here: SLURM orders the jobs (`--dependency=afterok`), requeues
pre-empted ones (`--requeue`, Lightning's auto-requeue on USR1) and places them. docs/cluster.md."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from cxrres import runs
from cxrres.study.slurm.scripts import (
    JOBS_FILE,
    PREPARE_SCRIPT,
    REPORT_SCRIPT,
    SLURM_LOGS,
    TRAIN_SCRIPT,
    prepare_script,
    report_script,
    slurm_dir,
    train_script,
)
from cxrres.errors import CxrresError
from cxrres.util.parallel import write_text_atomic
from cxrres.study.grid import SlurmOptions, StudyConfig, options_mapping, run_configs, run_state, write_study_file

#: SLURM job states, grouped as `--dry-run` shows them.
QUEUED_STATES = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING"}
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"})
FAILED_STATES = frozenset(
    {
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
DONE_STATE = "COMPLETED"


# --- submitting ---------------------------------------------------------------------------------------------------


def _command(argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run a SLURM client command; CxrresError when it is not installed."""
    if shutil.which(argv[0]) is None:
        raise CxrresError(
            f"{argv[0]} not found: SLURM's client commands are not installed here (make slurm-local starts "
            f"a one-node SLURM on this machine)"
        )
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
    history.append(
        dataclasses.asdict(submission)
        | {"submitted_local": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(submission.submitted))}
    )
    write_text_atomic(path, json.dumps(history, indent=1) + "\n")


def submit_study(study: StudyConfig, options: SlurmOptions, log: Callable[[str], None] = print) -> Submission:
    """Write the scripts into STUDY/slurm/ and submit: prepare, the train array (afterok:prepare), the report
    (afterok:train). Refuses while an earlier submission of the study still has jobs queued or running."""
    earlier = read_submissions(study)
    if earlier:
        active = [
            j
            for j, s in job_states(earlier[-1].job_ids() + earlier[-1].task_ids()).items()
            if s in QUEUED_STATES | RUNNING_STATES
        ]
        if active:
            raise CxrresError(
                f"jobs {', '.join(sorted(active))} of the last submission are still queued or running "
                f"(wait for them, or scancel them and submit again)"
            )
    if options.gpus_per_run:
        devices = study.train.get("devices")
        if devices not in (None, options.gpus_per_run):
            raise CxrresError(
                f"train.devices is {devices} but --gpus-per-run is {options.gpus_per_run}; they must agree"
            )
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
        write_text_atomic(
            folder / REPORT_SCRIPT, report_script(study, options, f"afterok:{train_id}" if train_id else None, **common)
        )
        report_id = sbatch(folder / REPORT_SCRIPT)
    except BaseException:
        _cancel(submitted)
        raise
    submission = Submission(started, prepare_id, train_id, report_id, names)
    _record(study, submission)
    if train_id:
        log(
            f"submitted: prepare job {prepare_id}; train array {train_id} ({len(names)} run{'s' * (len(names) != 1)}); "
            f"report job {report_id} (afterok:{train_id})"
        )
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
    done = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i|%T", "--jobs", ",".join(sorted(wanted))],
        capture_output=True,
        text=True,
        timeout=60,
    )
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
    done = subprocess.run(
        [
            "sacct",
            "--noheader",
            "--parsable2",
            "--allocations",
            "--format=JobID,State",
            "--jobs",
            ",".join(sorted(wanted)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return _parse_pairs(done.stdout, wanted) if done.returncode == 0 else {}


def _from_scontrol(wanted: set[str]) -> dict[str, str]:
    """States of jobs the controller still remembers (finished ones for MinJobAge seconds)."""
    if shutil.which("scontrol") is None:
        return {}
    states = {}
    for job in sorted({j.split("_")[0] for j in wanted}):
        done = subprocess.run(
            ["scontrol", "--oneliner", "show", "job", job], capture_output=True, text=True, timeout=60
        )
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


def wait_for(
    study: StudyConfig, submission: Submission, poll_s: float = 2.0, log: Callable[[str], None] = print
) -> None:
    """Block until the report job has ended; CxrresError naming each failed job (and its log) if any failed."""
    last_line = ""
    while True:
        states = job_states(submission.job_ids() + submission.task_ids())
        rows = submission_lines(study, submission, states)
        active = [r for r in rows if r[1] in ("queued", "running")]
        line = ", ".join(
            f"{word} {sum(r[1] == word for r in rows)}"
            for word in ("queued", "running", "done", "failed")
            if any(r[1] == word for r in rows)
        )
        if line != last_line:
            log(f"slurm: {line}")
            last_line = line
        if not active:
            break
        time.sleep(poll_s)
    failed = [r for r in rows if r[1] != "done"]
    if failed:
        logs = slurm_dir(study) / SLURM_LOGS
        raise CxrresError(
            "slurm jobs failed: "
            + "; ".join(f"{what} job {detail}" for what, _, detail in failed)
            + f" (logs in {logs})"
        )
