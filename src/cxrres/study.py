"""`cxrres study`: every (arch, resolution, seed, label) run of a study — prepare, train, evaluate, localize,
compare, report — resumable, listable (`--dry-run`) and splittable into cluster jobs (`--plan`).

Layout of a study directory:
    study.yaml            the study's settings
    runs/<arch>_<R>px_seed<S>[_<label>]/   one run directory each (see cxrres.runs)
    comparison/           cxrres compare over all runs
    report.html, report.md, report_files/
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxrres import runs
from cxrres.data.cache import parse_resolutions, prepare_cache
from cxrres.data.labels import BOX_CLASSES, CLASSES, canonical_label
from cxrres.errors import CxrresError, DataFormatError
from cxrres.parallel import write_text_atomic
from cxrres.train import TrainConfig, default_run_dir

STUDY_FILE = "study.yaml"
COMPARISON = "comparison"
KEY_TABLE = "key_results.md"
#: TrainConfig settings without a `cxrres train` flag; a plan carries them in STUDY/train-settings.yaml.
YAML_ONLY: tuple[str, ...] = ("lr_factor", "lr_patience", "stop_patience", "channels_last", "deterministic")


@dataclass
class StudyConfig:
    """A study: the grid of runs, the training settings they share, and the localization settings."""

    data: str
    resolutions: tuple[int, ...] = (64, 128, 256, 512, 1024)
    archs: tuple[str, ...] = ("densenet121",)
    seeds: tuple[int, ...] = (0,)
    labels: tuple[str | None, ...] = (None,)  # None: one 14-label network per (arch, R, seed)
    out: str = "study"
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig settings shared by all runs
    localize: dict[str, Any] = field(default_factory=lambda: {"method": "gradcam", "threshold": 0.5, "iou": 0.1, "examples": 3})
    n_boot: int = 1000


def study_from_file(path: str | Path) -> dict[str, Any]:
    """Study settings from YAML: keys of StudyConfig; `train:` holds TrainConfig keys."""
    path = Path(path)
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise CxrresError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise DataFormatError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise DataFormatError(path, "expected a mapping of setting: value")
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise DataFormatError(path, f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    train_known = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "resolution_px", "arch", "seed", "label", "out"}
    bad = sorted(set(payload.get("train", {}) or {}) - train_known)
    if bad:
        raise DataFormatError(path, f"unknown train setting {bad[0]!r} (known: {', '.join(sorted(train_known))})")
    return payload


def make_study(settings: dict[str, Any]) -> StudyConfig:
    """StudyConfig from merged settings, with lists parsed and labels checked."""
    s = {k: v for k, v in settings.items() if v is not None}
    if "data" not in s:
        raise CxrresError("missing setting: data (give --data DIR or put it in --config)")
    if "resolutions" in s:
        s["resolutions"] = parse_resolutions(s["resolutions"] if not isinstance(s["resolutions"], list) else ",".join(map(str, s["resolutions"])))
    for key, cast in (("archs", str), ("seeds", int)):
        if key in s:
            value = s[key]
            s[key] = tuple(cast(v) for v in (value.split(",") if isinstance(value, str) else value))
    if "labels" in s:
        value = s["labels"]
        names = value.split(",") if isinstance(value, str) else list(value)
        labels = []
        for name in names:
            if name in (None, "", "all"):
                labels.append(None)
                continue
            canonical = canonical_label(str(name))
            if canonical is None:
                raise CxrresError(f"unknown label {name!r}; choose from all, {', '.join(CLASSES)}")
            labels.append(canonical)
        s["labels"] = tuple(labels)
    s["data"] = str(Path(s["data"]).expanduser().resolve())
    s["out"] = str(Path(s.get("out", "study")).expanduser().resolve())
    defaults = StudyConfig(data=s["data"])
    s["localize"] = {**defaults.localize, **(s.get("localize") or {})}
    return StudyConfig(**s)


def run_configs(study: StudyConfig) -> list[TrainConfig]:
    """One TrainConfig per (arch, resolution, seed, label), run directories under STUDY/runs/."""
    configs = []
    for arch, resolution, seed, label in itertools.product(study.archs, study.resolutions, study.seeds, study.labels):
        config = TrainConfig(data=study.data, resolution_px=resolution, arch=arch, seed=seed, label=label, **study.train)
        config.out = str(Path(study.out) / "runs" / default_run_dir(config).name)
        configs.append(config)
    return configs


def run_state(config: TrainConfig) -> dict[str, Any]:
    """What is done for one run: trained (finished / epochs so far / not started), evaluated, localized."""
    run_dir = Path(config.out)
    status = runs.read_status(run_dir)
    trained = status.get("status") == "finished" and (run_dir / runs.PREDICTIONS).is_file()
    return {"run": run_dir.name, "trained": trained, "epochs": status.get("epochs", 0), "status": status.get("status", "not started"),
            "evaluated": (run_dir / "auc.csv").is_file(), "localized": (run_dir / "localization.csv").is_file()}


def needs_localization(config: TrainConfig) -> bool:
    """Runs that predict at least one class with official boxes are localized."""
    return config.label is None or config.label in BOX_CLASSES


def describe_state(study: StudyConfig) -> str:
    """`--dry-run`: one line per run saying what is done and what is left."""
    lines = []
    for config in run_configs(study):
        s = run_state(config)
        trained = "trained" if s["trained"] else (f"{s['status']} after {s['epochs']} epochs" if s["epochs"] else "not started")
        left = [step for step, done in (("train", s["trained"]), ("evaluate", s["evaluated"]),
                                        ("localize", s["localized"] or not needs_localization(config))) if not done]
        lines.append(f"{s['run']:<40} {trained:<28} left: {', '.join(left) or 'nothing'}")
    report = Path(study.out) / "report.html"
    lines.append(f"report: {'written' if report.is_file() else 'not written'} ({report})")
    return "\n".join(lines)


def train_flags(config: TrainConfig) -> list[str]:
    """`cxrres train` arguments reproducing `config` (only settings that differ from the defaults)."""
    defaults = TrainConfig(data="", resolution_px=0)
    flag_names = {"resolution_px": "--resolution", "num_workers": "--workers"}
    args = ["--data", config.data]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name in ("data", "progress") or value == getattr(defaults, f.name) and f.name != "resolution_px":
            continue
        flag = flag_names.get(f.name, "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):
            if f.name == "allow_missing" and value:
                args.append(flag)
            continue
        if f.name in YAML_ONLY:
            continue  # YAML-only settings: carried by the plan's config file
        args += [flag, str(value)]
    return args


def yaml_only_settings(study: StudyConfig) -> dict[str, Any]:
    """The study's training settings that only a config file can pass to `cxrres train`."""
    return {k: v for k, v in study.train.items() if k in YAML_ONLY}


def plan(study: StudyConfig, config_file: str | None = None) -> str:
    """`--plan`: one `cxrres train` command per unfinished run, then the command that finishes the study."""
    lines = ["# one job per run (e.g. a SLURM array: sed -n \"${SLURM_ARRAY_TASK_ID}p\"); each resumes if restarted"]
    yaml_only = yaml_only_settings(study)
    settings_file = Path(study.out) / "train-settings.yaml"
    for config in run_configs(study):
        if run_state(config)["trained"]:
            continue
        extra = ["--config", str(settings_file)] if yaml_only else []
        lines.append("cxrres train " + " ".join(shlex.quote(a) for a in train_flags(config) + extra + ["--quiet"]))
    if yaml_only:
        lines.insert(1, f"# settings only a config file can carry: {settings_file}")
    lines.append(f"# when all jobs are done (evaluates, localizes, compares, writes the report):")
    lines.append(f"cxrres study --data {shlex.quote(study.data)} --out {shlex.quote(study.out)} "
                 f"--resolutions {','.join(map(str, study.resolutions))} --archs {','.join(study.archs)} "
                 f"--seeds {','.join(map(str, study.seeds))}" + (f" --config {shlex.quote(config_file)}" if config_file else ""))
    return "\n".join(lines)


def write_plan_files(study: StudyConfig) -> None:
    """The YAML of settings the plan's commands need beyond flags."""
    yaml_only = yaml_only_settings(study)
    if yaml_only:
        Path(study.out).mkdir(parents=True, exist_ok=True)
        runs.write_yaml_atomic(Path(study.out) / "train-settings.yaml", yaml_only)


def run_study(study: StudyConfig, progress: bool = True, log=print) -> Path:
    """Do everything that is left: caches, training, evaluation, localization, comparison, report. Returns report.html."""
    from cxrres.evaluate import compare_runs, evaluate_run, write_comparison
    from cxrres.localize import localize_run
    from cxrres.report import key_table, write_report
    from cxrres.train import train

    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_yaml_atomic(out / STUDY_FILE, dataclasses.asdict(study))
    started = time.perf_counter()
    cache = study.train.get("cache")
    report = prepare_cache(study.data, study.resolutions, cache, progress=progress)  # one decode for every resolution
    log(f"cache {report.cache_dir}: {report.n_images:,} images at {','.join(map(str, study.resolutions))} px")
    configs = run_configs(study)
    for i, config in enumerate(configs, 1):
        state = run_state(config)
        name = Path(config.out).name
        if not state["trained"]:
            log(f"[{i}/{len(configs)}] train {name}" + (f" (resuming after {state['epochs']} epochs)" if state["epochs"] else ""))
            config.progress = progress
            train(config)
        if not state["evaluated"]:
            evaluate_run(config.out, n_boot=study.n_boot)
        if needs_localization(config) and not state["localized"]:
            log(f"[{i}/{len(configs)}] localize {name}")
            loc = study.localize
            localize_run(config.out, None, loc["method"], loc["threshold"], loc["iou"], loc["examples"], progress=progress)
    comparison = compare_runs([c.out for c in configs], n_boot=study.n_boot)
    write_comparison(comparison, out / COMPARISON)
    html = write_report(out, comparison)
    write_text_atomic(out / KEY_TABLE, key_table(comparison).to_markdown())
    log(f"study done in {time.perf_counter() - started:.0f} s")
    return html
