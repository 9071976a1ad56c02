"""The local executor of `cxrres study`: the steps of `study.plan` that are left, one after another in this process,
each through the function its command calls with the step's own settings, and the data read and cached once for all
runs (`grid.prepare_source`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from cxrres import runs
from cxrres.data.source import DataSource
from cxrres.study.grid import StudyConfig, boxed_classes, prepare_source, write_study_file
from cxrres.study.plan import Step, study_plan
from cxrres.util.parallel import write_text_atomic


def _label(step: Step, number: int, total: int) -> str:
    """What the log says a run step does: `[i/n] train <run>`, `[i/n] score <run> on <root>`, ..."""
    name = Path(str(step.run)).name
    if step.kind == "external":
        return f"[{number}/{total}] score {name} on {step.setting('data')}"
    if step.kind == "test_resolution":
        return f"[{number}/{total}] score {name} at test resolutions {step.setting('test_resolution')} px"
    return f"[{number}/{total}] {step.kind} {name}"


def run_step(
    step: Step, study: StudyConfig, source: DataSource, external: dict[str, DataSource], progress: bool
) -> None:
    """Do one run step with its settings (the ones `Step.argv` renders for the other executors)."""
    from cxrres.evaluation.cross_resolution import evaluate_test_resolutions, parse_test_resolutions
    from cxrres.evaluation.evaluate import evaluate_run
    from cxrres.evaluation.external import evaluate_external, prepare_external
    from cxrres.localization.localize import localize_run
    from cxrres.training.train import train

    run = str(step.run)
    if step.kind == "train":
        assert step.config is not None
        step.config.progress = progress
        train(step.config, source=source)
    elif step.kind == "evaluate":
        evaluate_run(run, n_boot=step.setting("n_boot"))
    elif step.kind == "test_resolution":
        resolutions = parse_test_resolutions(step.setting("test_resolution"))
        evaluate_test_resolutions(run, resolutions, n_boot=step.setting("n_boot"), source=source, progress=progress)
    elif step.kind == "external":
        root = step.setting("data")
        if root not in external:  # each other root read and cached once
            external[root] = prepare_external(root, runs.read_settings(run), list(study.resolutions), progress=progress)
        evaluate_external(
            run,
            root,
            n_boot=step.setting("n_boot"),
            allow_missing=step.setting("allow_missing"),
            progress=progress,
            source=external[root],
        )
    elif step.kind == "localize":
        localize_run(
            run,
            None,
            step.setting("method"),
            step.setting("threshold"),
            step.setting("iou"),
            step.setting("examples"),
            progress=progress,
            source=source,
        )
    else:
        raise ValueError(f"not a run step: {step.kind}")


def run_study(study: StudyConfig, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Do every step of the study that is left: caches, then per run training, evaluation, test resolutions,
    external roots and localization, then the comparison and the report. Returns report.html."""
    from cxrres.evaluation.compare import compare_runs
    from cxrres.report.document import key_table, write_report

    out = Path(study.out)
    write_study_file(study)
    started = time.perf_counter()
    source = prepare_source(study, progress)  # one scan, one decode for every resolution
    log(
        f"cache {source.cache_dir}: {source.prepared.n_images:,} images at "
        f"{','.join(map(str, source.prepared.resolutions_px))} px"
    )
    steps = study_plan(study, lambda: boxed_classes(source.table))
    run_dirs = list(dict.fromkeys(str(s.run) for s in steps if s.run is not None))
    index = {run: i for i, run in enumerate(run_dirs, 1)}
    external: dict[str, DataSource] = {}
    for step in steps:
        if step.done or step.run is None:
            continue
        if step.kind == "train":
            epochs = runs.read_status(Path(step.run)).epochs
            log(
                _label(step, index[str(step.run)], len(run_dirs))
                + (f" (resuming after {epochs} epochs)" if epochs else "")
            )
        elif step.kind != "evaluate":
            log(_label(step, index[str(step.run)], len(run_dirs)))
        run_step(step, study, source, external, progress)
    comparison = compare_runs(run_dirs, n_boot=study.n_boot)
    html = write_report(out, comparison, source)  # also writes STUDY/comparison/
    write_text_atomic(out / runs.KEY_TABLE, key_table(comparison).to_markdown())
    log(f"study done in {time.perf_counter() - started:.0f} s")
    return html
