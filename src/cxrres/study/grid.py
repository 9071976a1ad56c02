"""`cxrres study`: every (arch, resolution, seed, label) run of a study — prepare, train, evaluate, localize,
compare, report — resumable, listable (`--dry-run`) and splittable into cluster jobs (`--plan`).

The study directory's files are named in `cxrres.runs`: study.yaml (every setting), runs/<arch>_<R>px_seed<S>[_<label>]/
(one run directory each), comparison/ (cxrres compare over all runs), key_results.md, report.html, report.md.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrres import runs
from cxrres.config import PER_RUN, TrainConfig, checked_settings, default_run_dir
from cxrres.data.cache import parse_resolutions
from cxrres.data.datasets import DatasetTable, dataset_classes, detect_dataset
from cxrres.data.labels import canonical_label
from cxrres.data.source import DataSource
from cxrres.errors import CxrresError, DataFormatError
from cxrres.models.registry import check_arch
from cxrres.localization.settings import LocalizeSettings, localize_settings
from cxrres.util.yamlfile import read_settings_yaml

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
        raise CxrresError(
            f"unknown slurm setting {bad[0]!r} in the study's `slurm:` mapping (known: {', '.join(sorted(known))})"
        )
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
                raise CxrresError(
                    f"slurm setting {key} must be {'>= 0' if key == 'gpus_per_run' else '>= 1'}, got {merged[key]}"
                )
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


def study_from_file(path: str | Path) -> dict[str, Any]:
    """Study settings from YAML: keys of StudyConfig; `train:` holds TrainConfig keys other than the grid's. Every
    section and value is checked here (`parse_values`), so a typo is refused in one line naming the file before
    anything trains."""
    payload = read_settings_yaml(path, {f.name for f in dataclasses.fields(StudyConfig)})
    try:
        parse_values({k: v for k, v in payload.items() if v is not None}, path)
    except DataFormatError:  # names the file already
        raise
    except CxrresError as error:
        raise DataFormatError(Path(path), str(error)) from None
    return payload


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


def _listed(value: Any, key: str) -> list[Any]:
    """A list setting given as a YAML list or as comma-separated text ("0,1")."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and value:
        return list(value)
    raise CxrresError(f"{key}: give a list (or comma-separated text), not {value!r}")


def _integer(value: Any, key: str, low: int) -> int:
    """An integer setting >= `low` (YAML int or its text)."""
    try:
        number = int(value) if not isinstance(value, (bool, float)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number < low:
        raise CxrresError(f"{key}: expected an integer >= {low}, got {value!r}")
    return number


def _train_values(mapping: Any) -> dict[str, Any]:
    """The `train:` mapping: known TrainConfig keys (not the grid's), each value checked as its flag is."""
    if not isinstance(mapping, dict):
        raise CxrresError("`train:` must be a mapping of setting: value")
    known = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_RUN)
    bad = sorted(set(mapping) - known)
    if bad:
        raise CxrresError(f"unknown train setting {bad[0]!r} (known: {', '.join(sorted(known))})")
    return checked_settings(mapping, "train setting")


def parse_values(s: dict[str, Any], where: str | Path = "the study's settings") -> dict[str, Any]:
    """Every study setting in `s` parsed and checked, one line naming the key otherwise: resolutions, archs (known to
    the model registry), seeds, labels, n_boot, external roots, test resolutions, train, localize and slurm."""
    from cxrres.evaluation.cross_resolution import parse_test_resolutions

    s = dict(s)
    if "resolutions" in s:
        s["resolutions"] = parse_resolutions(",".join(map(str, _listed(s["resolutions"], "resolutions"))))
    if "archs" in s:
        s["archs"] = tuple(str(a) for a in _listed(s["archs"], "archs"))
        for arch in s["archs"]:
            for resolution in s.get("resolutions") or (None,):
                check_arch(arch, resolution)
    if "seeds" in s:
        s["seeds"] = tuple(_integer(v, "seeds", 0) for v in _listed(s["seeds"], "seeds"))
    if "n_boot" in s:
        s["n_boot"] = _integer(s["n_boot"], "n_boot", 1)
    if "labels" in s:
        s["labels"] = tuple(
            None if name in (None, "", "all") else canonical_label(str(name)) or str(name)
            for name in _listed(s["labels"], "labels")
        )
    if "external" in s:
        roots = s["external"]
        roots = roots.split(",") if isinstance(roots, str) else roots
        if not isinstance(roots, (list, tuple)) or not all(isinstance(r, str) and r.strip() for r in roots):
            raise CxrresError(f"external: give a list of data roots (or --external ROOT,ROOT), not {s['external']!r}")
        s["external"] = tuple(str(Path(r.strip()).expanduser().resolve()) for r in roots)
    if "test_resolutions" in s:
        value = s["test_resolutions"]
        s["test_resolutions"] = parse_test_resolutions(value, "test_resolutions") if value not in ((), [], "") else ()
    s["train"] = _train_values(s.get("train") or {})
    s["localize"] = dataclasses.asdict(localize_settings(s.get("localize"), where))
    s["slurm"] = options_mapping(slurm_options(s.get("slurm")))
    return s


def make_study(settings: dict[str, Any]) -> StudyConfig:
    """StudyConfig from merged settings, every value parsed and checked (`parse_values`), and labels checked against
    the data set's classes (NIH aliases such as `Infiltrate` resolved; not checked while the data root does not
    exist)."""
    s = parse_values({k: v for k, v in settings.items() if v is not None})
    if "data" not in s:
        raise CxrresError("missing setting: data (give --data DIR or put it in --config)")
    s["data"] = str(Path(s["data"]).expanduser().resolve())
    train = s["train"]
    for key in ("weights", "cache"):  # paths, as a run resolves them, so that --plan's commands work from any folder
        if isinstance(train.get(key), str) and train[key] not in ("imagenet", "none"):
            train[key] = str(Path(train[key]).expanduser().resolve())
    s["out"] = str(Path(s.get("out", "study")).expanduser().resolve())
    study = StudyConfig(**s)
    if any(study.labels) and Path(study.data).is_dir():
        check_labels(study.labels, study_classes(study), study.data)
    return study


def study_classes(study: StudyConfig) -> tuple[str, ...]:
    """The classes of the study's data set, in its own names (NIH's 14 without reading its metadata)."""
    options = run_configs(study)[0].data_options()
    return dataset_classes(study.data, None if options.dataset == "auto" else options.dataset, options)


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
        study.data, run_configs(study)[0].data_options(), resolutions, study.train.get("cache"), progress
    )


#: How `cxrres study` does the work: `local` runs the plan's steps here, one after another (`study.local.run_study`);
#: `slurm` submits the same steps as sbatch jobs (`cxrres.study.slurm.submit_study`), whose last job runs the local
#: executor once every run is trained.
EXECUTORS: tuple[str, ...] = ("local", "slurm")
