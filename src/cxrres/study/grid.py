"""`cxrres study`: every (arch, resolution, seed, label) run of a study — prepare, train, evaluate, localize,
compare, report — resumable, listable (`--dry-run`) and splittable into cluster jobs (`--plan`).

The study directory's files are named in `cxrres.runs`: study.yaml (every setting), runs/<arch>_<R>px_seed<S>[_<label>]/
(one run directory each), comparison/ (cxrres compare over all runs), key_results.md, report.html, report.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrres import runs
from cxrres.config import (
    PER_RUN,
    TrainConfig,
    default_run_dir,
    read_settings_yaml,
    train_argv,
)
from cxrres.data.cache import parse_resolutions
from cxrres.data.datasets import DatasetTable, dataset_classes, detect_dataset
from cxrres.data.labels import canonical_label
from cxrres.data.source import DataSource
from cxrres.errors import CxrresError, DataFormatError
from cxrres.localization.settings import LocalizeSettings, localize_settings
from cxrres.util.parallel import write_text_atomic

#: The StudyConfig settings that `cxrres study` takes as flags (the rest come from --config).
GRID_FLAGS: tuple[str, ...] = ("data", "resolutions", "archs", "seeds", "labels", "out", "external")
#: The training settings shared by all runs that `cxrres study` also takes as flags (`cxrres train`'s spelling); each
#: overrides the same key of the study file's `train:` mapping, and --plan's train commands carry it.
TRAIN_FLAGS: tuple[str, ...] = ("weights", "allow_missing", "max_epochs", "precision", "cache")


@dataclass
class StudyConfig:
    """A study: the grid of runs, the training settings they share, and the localization settings."""

    data: str
    resolutions: tuple[int, ...] = (64, 128, 256, 512, 1024)
    archs: tuple[str, ...] = ("densenet121",)
    seeds: tuple[int, ...] = (0,)
    labels: tuple[str | None, ...] = (None,)  # None: one network over all the run's classes per (arch, R, seed)
    out: str = "study"
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig settings shared by all runs
    localize: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(LocalizeSettings()))
    n_boot: int = 1000
    slurm: dict[str, Any] = field(default_factory=dict)  # `--executor slurm` settings (cxrres.study.slurm.SlurmOptions)
    external: tuple[str, ...] = ()  # other data roots every run is scored on once trained (cxrres evaluate --data)
    test_resolutions: tuple[int, ...] = ()  # test sizes (px) every run is scored at (cxrres evaluate --test-resolution)


def study_from_file(path: str | Path) -> dict[str, Any]:
    """Study settings from YAML: keys of StudyConfig; `train:` holds TrainConfig keys other than the grid's."""
    payload = read_settings_yaml(path, {f.name for f in dataclasses.fields(StudyConfig)})
    train_known = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_RUN)
    _check_train_mapping(path, payload.get("train") or {}, train_known)
    localize_settings(payload.get("localize"), path)  # refused here, naming the file, before anything trains
    if payload.get("test_resolutions") not in (None, [], ()):
        from cxrres.evaluation.cross_resolution import parse_test_resolutions

        try:
            parse_test_resolutions(payload["test_resolutions"], "test_resolutions")
        except CxrresError as error:
            raise DataFormatError(Path(path), str(error)) from None
    return payload


def _check_train_mapping(path: str | Path, mapping: Any, known: set[str]) -> None:
    """The `train:` mapping of a study file must be a mapping of known TrainConfig keys."""
    if not isinstance(mapping, dict):
        raise DataFormatError(Path(path), "`train:` must be a mapping of setting: value")
    bad = sorted(set(mapping) - known)
    if bad:
        raise DataFormatError(Path(path), f"unknown train setting {bad[0]!r} (known: {', '.join(sorted(known))})")


def study_settings(config_file: str | Path | None, flags: dict[str, Any]) -> "StudyConfig":
    """The study of a config file (if any) overridden by the flags that were given: grid flags, and `TRAIN_FLAGS`
    (into its `train:` mapping)."""
    settings = study_from_file(config_file) if config_file else {}
    given = {k: v for k, v in flags.items() if v is not None}
    train = {k: given.pop(k) for k in TRAIN_FLAGS if k in given}
    settings.update(given)
    if train:
        settings["train"] = {**(settings.get("train") or {}), **train}
    return make_study(settings)


def make_study(settings: dict[str, Any]) -> StudyConfig:
    """StudyConfig from merged settings, with lists parsed and labels checked against the data set's classes (NIH
    aliases such as `Infiltrate` resolved; not checked while the data root does not exist)."""
    s = {k: v for k, v in settings.items() if v is not None}
    if "data" not in s:
        raise CxrresError("missing setting: data (give --data DIR or put it in --config)")
    if "resolutions" in s:
        s["resolutions"] = parse_resolutions(
            s["resolutions"] if not isinstance(s["resolutions"], list) else ",".join(map(str, s["resolutions"]))
        )
    for key, cast in (("archs", str), ("seeds", int)):
        if key in s:
            value = s[key]
            s[key] = tuple(cast(v) for v in (value.split(",") if isinstance(value, str) else value))
    if "labels" in s:
        value = s["labels"]
        names = value.split(",") if isinstance(value, str) else list(value)
        s["labels"] = tuple(
            None if name in (None, "", "all") else canonical_label(str(name)) or str(name) for name in names
        )
    if "external" in s:
        value = s["external"]
        roots = value.split(",") if isinstance(value, str) else value
        if not isinstance(roots, (list, tuple)) or not all(isinstance(r, str) and r.strip() for r in roots):
            raise CxrresError(f"external: give a list of data roots (or --external ROOT,ROOT), not {value!r}")
        s["external"] = tuple(str(Path(r.strip()).expanduser().resolve()) for r in roots)
    if "test_resolutions" in s:
        from cxrres.evaluation.cross_resolution import parse_test_resolutions

        value = s["test_resolutions"]
        s["test_resolutions"] = parse_test_resolutions(value, "test_resolutions") if value not in ((), [], "") else ()
    s["data"] = str(Path(s["data"]).expanduser().resolve())
    train = dict(s.get("train") or {})
    for key in ("weights", "cache"):  # paths, as a run resolves them, so that --plan's commands work from any folder
        if isinstance(train.get(key), str) and train[key] not in ("imagenet", "none"):
            train[key] = str(Path(train[key]).expanduser().resolve())
    s["train"] = train
    s["out"] = str(Path(s.get("out", "study")).expanduser().resolve())
    s["localize"] = dataclasses.asdict(localize_settings(s.get("localize"), "the study's localize settings"))
    study = StudyConfig(**s)
    if any(study.labels) and Path(study.data).is_dir():
        check_labels(study.labels, study_classes(study), study.data)
    return study


def study_classes(study: StudyConfig) -> tuple[str, ...]:
    """The classes of the study's data set, in its own names (NIH's 14 without reading its metadata)."""
    spec = run_configs(study)[0].split_spec()
    return dataset_classes(study.data, None if spec.dataset == "auto" else spec.dataset, spec.options())


def check_labels(labels: tuple[str | None, ...], classes: tuple[str, ...], data: str) -> None:
    """CxrresError naming the first label that is not one of the data set's `classes` (None, i.e. `all`, always is)."""
    unknown = [label for label in labels if label is not None and label not in classes]
    if unknown:
        raise CxrresError(f"{data}: unknown label {unknown[0]!r}; choose from all, {', '.join(classes)}")


def run_configs(study: StudyConfig) -> list[TrainConfig]:
    """One TrainConfig per (arch, resolution, seed, label), run directories under STUDY/runs/."""
    configs = []
    for arch, resolution, seed, label in itertools.product(study.archs, study.resolutions, study.seeds, study.labels):
        config = TrainConfig(
            data=study.data, resolution_px=resolution, arch=arch, seed=seed, label=label, **study.train
        )
        config.out = str(Path(study.out) / runs.STUDY_RUNS / default_run_dir(config).name)
        configs.append(config)
    return configs


@dataclass(frozen=True)
class RunState:
    """What is done for one run of a study."""

    run: str
    trained: bool
    epochs: int
    status: str
    evaluated: bool
    localized: bool
    external_left: tuple[str, ...] = ()  # the study's external roots this run is not yet scored on


def run_state(config: TrainConfig, external: tuple[str, ...] = ()) -> RunState:
    """What is done for one run: trained (finished / epochs so far / not started), evaluated, localized, and which of
    the `external` roots it is not yet scored on."""
    run_dir = Path(config.out)
    status = runs.read_status(run_dir)
    return RunState(
        run_dir.name,
        runs.is_trained(run_dir),
        status.epochs,
        status.status,
        (run_dir / runs.AUC).is_file(),
        (run_dir / runs.LOCALIZATION).is_file(),
        tuple(root for root in external if not runs.external_scored(run_dir, root)),
    )


def boxed_classes(table: DatasetTable) -> set[str]:
    """The classes with ground-truth boxes in the data set's test part (what `localize` scores)."""
    return set(table.boxes_in("test")["label"])


def needs_localization(config: TrainConfig, boxed: set[str]) -> bool:
    """Runs that predict at least one class of `boxed` (`boxed_classes` of the study's data) are localized."""
    classes = [config.label] if config.label else config.class_names.split(",") if config.class_names else None
    return bool(boxed) if classes is None else any(c in boxed for c in classes)


def describe_state(study: StudyConfig) -> str:
    """`--dry-run`: one line per run saying what is done and what is left (the command adds where the study's SLURM
    jobs stand, `cluster.describe_jobs`: the executor imports the study, never the other way round)."""
    lines, boxed = [], None
    for config in run_configs(study):
        s = run_state(config, study.external)
        if not s.localized and boxed is None:  # the metadata is read only when a run's localization is in question
            boxed = boxed_classes(config.split_spec().open(study.data))
        trained = "trained" if s.trained else (f"{s.status} after {s.epochs} epochs" if s.epochs else "not started")
        left = [
            step
            for step, done in (
                ("train", s.trained),
                ("evaluate", s.evaluated),
                ("localize", s.localized or not needs_localization(config, boxed or set())),
            )
            if not done
        ]
        left += [f"external {len(s.external_left)}/{len(study.external)}"] if s.external_left else []
        lines.append(f"{s.run:<40} {trained:<28} left: {', '.join(left) or 'nothing'}")
    report = Path(study.out) / runs.REPORT_HTML
    lines.append(f"report: {'written' if report.is_file() else 'not written'} ({report})")
    return "\n".join(lines)


def study_argv(study: StudyConfig) -> list[str]:
    """`cxrres study` arguments that reproduce `study`: the grid as flags, everything else in STUDY/study.yaml."""
    labels = ",".join(label or "all" for label in study.labels)
    return [
        "--data",
        study.data,
        "--out",
        study.out,
        "--resolutions",
        ",".join(map(str, study.resolutions)),
        "--archs",
        ",".join(study.archs),
        "--seeds",
        ",".join(map(str, study.seeds)),
        "--labels",
        labels,
        "--config",
        str(Path(study.out) / runs.STUDY_FILE),
    ]


def missing_warning(study: StudyConfig) -> str | None:
    """A plan's comment when the data root lacks listed images and the study does not allow it (every train command
    would then fail); None otherwise."""
    if study.train.get("allow_missing") or not Path(study.data).is_dir():
        return None
    from cxrres.data import DataRoot
    from cxrres.data.cache import Sources
    from cxrres.data.layout import describe_missing

    sources = Sources.scan(DataRoot.at(study.data), detect_dataset(study.data), bool(study.train.get("skip_bad")))
    if not sources.missing:
        return None
    return (
        f"# warning: {describe_missing(sources.missing, len(sources.missing) + len(sources.names))}; these train "
        f"commands stop there: plan with --allow-missing to train on the {len(sources.names):,} present"
    )


def job_commands(study: StudyConfig) -> str:
    """`--plan`: one `cxrres train` command per unfinished run, then the command that finishes the study."""
    lines = ['# one job per run (e.g. a SLURM array: sed -n "${SLURM_ARRAY_TASK_ID}p"); each resumes if restarted']
    warning = missing_warning(study) if any(not run_state(c).trained for c in run_configs(study)) else None
    lines += [warning] if warning else []
    for config in run_configs(study):
        if not run_state(config).trained:
            lines.append("cxrres train " + " ".join(shlex.quote(a) for a in train_argv(config) + ["--quiet"]))
    external = [(c.out, root) for c in run_configs(study) for root in run_state(c, study.external).external_left]
    if external:
        lines.append("# scoring on the external roots, each once its run is trained (the last command does it too):")
        flags = f" --n-boot {study.n_boot}" + (" --allow-missing" if study.train.get("allow_missing") else "")
        lines += [f"cxrres evaluate {shlex.quote(out)} --data {shlex.quote(root)}{flags}" for out, root in external]
    lines.append(
        "# when all jobs are done (evaluates, localizes, scores on external roots, compares, writes the report):"
    )
    lines.append("cxrres study " + " ".join(shlex.quote(a) for a in study_argv(study)))
    return "\n".join(lines)


def write_study_file(study: StudyConfig) -> Path:
    """STUDY/study.yaml: every setting of the study (what `study_argv`'s --config reads back)."""
    path = Path(study.out) / runs.STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.asdict(study)
    settings.update(
        {k: list(settings[k]) for k in ("resolutions", "archs", "seeds", "labels", "external", "test_resolutions")}
    )
    runs.write_yaml_atomic(path, settings)
    return path


def prepare_source(study: StudyConfig, progress: bool = True) -> DataSource:
    """The study's data root, split and cache at every resolution, built once for all runs."""
    resolutions = sorted(set(study.resolutions) | set(study.test_resolutions))
    return DataSource.prepare(
        study.data, run_configs(study)[0].split_spec(), resolutions, study.train.get("cache"), progress
    )


#: How `cxrres study` does the work: `local` runs `run_study` here, one run after another; `slurm` submits the same
#: steps as sbatch jobs (`cxrres.study.slurm.submit_study`), whose last job runs `run_study` once every run is trained.
EXECUTORS: tuple[str, ...] = ("local", "slurm")


def run_study(study: StudyConfig, progress: bool = True, log=print) -> Path:
    """Do everything that is left: caches, training, evaluation, localization, comparison, report. Returns
    report.html."""
    from cxrres.evaluation.compare import compare_runs
    from cxrres.evaluation.cross_resolution import evaluate_test_resolutions, scored_resolutions
    from cxrres.evaluation.evaluate import evaluate_run
    from cxrres.evaluation.external import evaluate_external, prepare_external
    from cxrres.localization.localize import localize_run
    from cxrres.report.document import key_table, write_report
    from cxrres.training.train import train

    out = Path(study.out)
    write_study_file(study)
    started = time.perf_counter()
    source = prepare_source(study, progress)  # one scan, one decode for every resolution
    log(
        f"cache {source.cache_dir}: {source.prepared.n_images:,} images at "
        f"{','.join(map(str, source.prepared.resolutions_px))} px"
    )
    configs = run_configs(study)
    external: dict[str, DataSource] = {}
    boxed = boxed_classes(source.table)
    for i, config in enumerate(configs, 1):
        state = run_state(config)
        name = Path(config.out).name
        if not state.trained:
            log(
                f"[{i}/{len(configs)}] train {name}"
                + (f" (resuming after {state.epochs} epochs)" if state.epochs else "")
            )
            config.progress = progress
            train(config, source=source)
        if (
            not state.evaluated or not (Path(config.out) / runs.CALIBRATION).is_file()
        ):  # runs evaluated before calibration.csv
            evaluate_run(config.out, n_boot=study.n_boot)
        if not set(study.test_resolutions) <= scored_resolutions(config.out):
            log(
                f"[{i}/{len(configs)}] score {name} at test resolutions {','.join(map(str, study.test_resolutions))} px"
            )
            evaluate_test_resolutions(
                config.out, study.test_resolutions, n_boot=study.n_boot, source=source, progress=progress
            )
        for root in run_state(config, study.external).external_left:  # each other root read and cached once
            log(f"[{i}/{len(configs)}] score {name} on {root}")
            if root not in external:
                external[root] = prepare_external(
                    root, runs.read_settings(config.out), list(study.resolutions), progress=progress
                )
            evaluate_external(
                config.out,
                root,
                n_boot=study.n_boot,
                allow_missing=bool(study.train.get("allow_missing")),
                progress=progress,
                source=external[root],
            )
        if needs_localization(config, boxed) and not state.localized:
            log(f"[{i}/{len(configs)}] localize {name}")
            loc = study.localize
            localize_run(
                config.out,
                None,
                loc["method"],
                loc["threshold"],
                loc["iou"],
                loc["examples"],
                progress=progress,
                source=source,
            )
    comparison = compare_runs([c.out for c in configs], n_boot=study.n_boot)
    html = write_report(out, comparison, source)  # also writes STUDY/comparison/
    write_text_atomic(out / runs.KEY_TABLE, key_table(comparison).to_markdown())
    log(f"study done in {time.perf_counter() - started:.0f} s")
    return html
