"""The study as one list of steps, built once from the study's settings: prepare, then per run train, evaluate, test
resolutions, external roots and localize, then the report. Every executor reads this list — the local one runs the
steps (`study.local.run_study`), `--dry-run` shows what is left of it, `--plan` prints its command lines and the
SLURM executor renders them into sbatch scripts (`study.slurm.scripts`) — so a setting reaches all of them or none.

A step's settings are kept as the CLI's parser yields them (its `dest` names and types); `Step.argv` renders them with
one flag table, and tests/test_plan.py parses every rendered line with cxrres's own parser and gets them back.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cxrres import runs
from cxrres.config import TrainConfig, train_argv
from cxrres.data.source import open_table
from cxrres.evaluation.cross_resolution import scored_resolutions
from cxrres.study.grid import (
    StudyConfig,
    boxed_classes,
    missing_warning,
    needs_localization,
    run_configs,
    run_state,
    study_argv,
)

#: Step kinds in the order a run goes through them; `prepare` comes first and `report` last, once per study.
KINDS: tuple[str, ...] = ("prepare", "train", "evaluate", "test_resolution", "external", "localize", "report")
#: Per kind: the cxrres command that does it, and each setting's flag (setting names are the parser's `dest`).
COMMANDS: dict[str, str] = {
    "prepare": "study",
    "train": "train",
    "evaluate": "evaluate",
    "test_resolution": "evaluate",
    "external": "evaluate",
    "localize": "localize",
    "report": "study",
}
FLAGS: dict[str, str] = {
    "n_boot": "--n-boot",
    "test_resolution": "--test-resolution",
    "data": "--data",
    "allow_missing": "--allow-missing",
    "method": "--method",
    "threshold": "--threshold",
    "iou": "--iou",
    "examples": "--examples",
}
#: The steps `--plan` prints a line for; its last line (the report step's) does the rest that is left: evaluate,
#: test resolutions, localize. (So `--plan` reads no metadata: localization needs are decided when that line runs.)
PLANNED_KINDS: tuple[str, ...] = ("train", "external", "report")
#: How `--dry-run` names a step that is left.
LEFT_NAMES: dict[str, str] = {
    "train": "train",
    "evaluate": "evaluate",
    "test_resolution": "test resolutions",
    "localize": "localize",
}


@dataclass(frozen=True)
class Step:
    """One step of a study: its kind, the run directory it works on (None: the whole study), its settings as
    (parser dest, value) pairs, whether it is done, and for `train` the run's TrainConfig."""

    kind: str
    run: str | None
    settings: tuple[tuple[str, Any], ...]
    done: bool
    config: TrainConfig | None = None
    study_args: tuple[str, ...] = ()  # prepare, report: the `cxrres study` arguments that reproduce the study

    def setting(self, name: str) -> Any:
        """The value of one setting."""
        return dict(self.settings)[name]

    def argv(self) -> list[str]:
        """The `cxrres` arguments that do this step (what `--plan` prints and SLURM runs)."""
        if self.kind == "train":
            assert self.config is not None
            return ["train", *train_argv(self.config)]
        if self.kind == "prepare":
            return ["study", *self.study_args, "--step", "prepare"]
        if self.kind == "report":  # everything left, then the comparison and the report
            return ["study", *self.study_args]
        out = [COMMANDS[self.kind], str(self.run)]
        for name, value in self.settings:
            if isinstance(value, bool):
                out += [FLAGS[name]] if value else []
            else:
                out += [FLAGS[name], str(value)]
        return out

    def command_line(self, quiet: bool = True) -> str:
        """`cxrres ...` as a shell line (with --quiet where the command has it and `quiet`)."""
        argv = self.argv() + (["--quiet"] if quiet and COMMANDS[self.kind] != "evaluate" else [])
        return "cxrres " + " ".join(shlex.quote(a) for a in argv)


def _run_steps(
    study: StudyConfig, config: TrainConfig, boxed: Callable[[], set[str]], kinds: tuple[str, ...]
) -> list[Step]:
    """The steps of one run, each marked done or not from the files of its run directory."""
    state = run_state(config, study.external)
    run = config.out
    n_boot = ("n_boot", study.n_boot)
    steps = [
        Step("train", run, (), state.trained, config),
        Step("evaluate", run, (n_boot,), state.evaluated and (Path(run) / runs.CALIBRATION).is_file()),
    ]
    if study.test_resolutions:
        wanted = ",".join(map(str, study.test_resolutions))
        done = set(study.test_resolutions) <= scored_resolutions(run)
        steps.append(Step("test_resolution", run, (("test_resolution", wanted), n_boot), done))
    allow = ("allow_missing", bool(study.train.get("allow_missing")))
    for root in study.external:
        steps.append(Step("external", run, (("data", root), n_boot, allow), root not in state.external_left))
    if "localize" in kinds and (state.localized or needs_localization(config, boxed())):
        loc = study.localize
        settings = tuple((name, loc[name]) for name in ("method", "threshold", "iou", "examples"))
        steps.append(Step("localize", run, settings, state.localized))
    return steps


def study_plan(
    study: StudyConfig, boxed: Callable[[], set[str]] | None = None, kinds: tuple[str, ...] = KINDS
) -> list[Step]:
    """The steps of `study` of these `kinds` (all by default), in order. `boxed()`: the classes with test boxes
    (`grid.boxed_classes`; by default the study's data set's, read from its metadata), asked only when a run's
    localization step is wanted and not yet done."""
    known: list[set[str]] = []

    def boxed_once() -> set[str]:
        if not known:
            known.append(
                boxed() if boxed else boxed_classes(open_table(study.data, run_configs(study)[0].data_options()))
            )
        return known[0]

    argv = tuple(study_argv(study))
    per_run = [step for config in run_configs(study) for step in _run_steps(study, config, boxed_once, kinds)]
    trained = all(step.done for step in per_run if step.kind == "train")  # the caches are wanted until then
    steps = [
        Step("prepare", None, (), trained, study_args=argv),
        *per_run,
        Step("report", None, (), (Path(study.out) / runs.REPORT_HTML).is_file(), study_args=argv),
    ]
    return [step for step in steps if step.kind in kinds]


def describe_plan(study: StudyConfig, steps: list[Step]) -> str:
    """`--dry-run`: one line per run saying how far training is and which steps are left, then the report."""
    lines = []
    for config in run_configs(study):
        s = run_state(config, study.external)
        own = [step for step in steps if step.run == config.out and not step.done]
        trained = "trained" if s.trained else (f"{s.status} after {s.epochs} epochs" if s.epochs else "not started")
        left = [LEFT_NAMES[step.kind] for step in own if step.kind in LEFT_NAMES]
        external = [step for step in own if step.kind == "external"]
        left += [f"external {len(external)}/{len(study.external)}"] if external else []
        lines.append(f"{s.run:<40} {trained:<28} left: {', '.join(left) or 'nothing'}")
    report = Path(study.out) / runs.REPORT_HTML
    lines.append(f"report: {'written' if report.is_file() else 'not written'} ({report})")
    return "\n".join(lines)


def plan_commands(study: StudyConfig, steps: list[Step]) -> str:
    """`--plan`: one `cxrres train` line per unfinished run (an array's tasks), the external scorings, then the line
    that does everything else that is left (evaluate, test resolutions, localize, report)."""
    lines = ['# one job per run (e.g. a SLURM array: sed -n "${SLURM_ARRAY_TASK_ID}p"); each resumes if restarted']
    trains = [step for step in steps if step.kind == "train" and not step.done]
    warning = missing_warning(study) if trains else None
    lines += [warning] if warning else []
    lines += [step.command_line() for step in trains]
    external = [step for step in steps if step.kind == "external" and not step.done]
    if external:
        lines.append("# scoring on the external roots, each once its run is trained (the last command does it too):")
        lines += [step.command_line() for step in external]
    lines.append(
        "# when all jobs are done (evaluates, localizes, scores on external roots, compares, writes the report):"
    )
    lines.append(next(step for step in steps if step.kind == "report").command_line(quiet=False))
    return "\n".join(lines)
