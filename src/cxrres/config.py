"""Every setting of one training run, its recipe default, and its one spelling as a flag and a YAML key.

`TrainConfig` is the single home of a run's settings. Each field carries its help text in `metadata`, from which
`add_train_arguments` builds the `cxrres train` flags and `train_argv` writes them back (used by `study --plan`), so a
setting cannot exist as a YAML key without a flag. `resolve` fills the automatic values from the machine and the
recipe (as timm's `data/config.py` resolves data settings apart from training). No Lightning here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


from cxrres.data.datasets import DATASETS, LABELERS, READER_RULES, UNCERTAIN_POLICIES, DataOptions
from cxrres.data.labels import CLASSES, canonical_label
from cxrres.errors import CxrresError, DataFormatError
from cxrres.util.hardware import cpu_has_native_bf16
from cxrres.util.yamlfile import read_settings_yaml
from cxrres.models.registry import ARCHS, check_arch, default_batch_size, is_timm

PRECISIONS: tuple[str, ...] = ("auto", "32", "32-true", "bf16-mixed", "16-mixed")
SPLITS: tuple[str, ...] = ("chexnet", "official")
ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu")
#: The defaults of the data settings (one home: `DataOptions`, which the adapters take).
READ = DataOptions()


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    identity: bool = True,
) -> Any:
    """A TrainConfig field: its default, help text, flag spelling (default --field-name) and whether it defines the
    run."""
    return field(
        default=default,
        metadata={"help": help, "flag": flag, "metavar": metavar, "choices": choices, "identity": identity},
    )


@dataclass
class TrainConfig:
    """Every setting of one run. `None` means "resolve from the machine or the recipe" (see `resolve`)."""

    data: str = setting(None, "data root (as for describe)", metavar="DIR")
    resolution_px: int = setting(None, "training resolution in pixels (square)", flag="--resolution", metavar="PX")
    arch: str = setting(
        "densenet121",
        f"network: {', '.join(ARCHS)} (torchvision, the recipe's), or timm:NAME, a timm "
        "ConvNeXt, EfficientNet or ViT (timm:convnext_tiny, timm:efficientnet_b0, "
        "timm:vit_small_patch16_224; docs/training.md)",
        metavar="ARCH",
    )
    weights: str = setting(
        "imagenet",
        "initial weights: ImageNet's (torchvision's, or timm's from the local Hugging "
        "Face / torch hub cache), none, or a local state dict/"
        "checkpoint (CheXNet-style keys are remapped; loaded with weights_only=True)",
        metavar="imagenet|none|PATH",
    )
    split: str = setting(
        READ.split,
        "chexnet: the CheXNet train/val/test lists and labels (the study's default, bundled); "
        "official: the NIH test list, validation carved patient-wise from train_val",
        choices=SPLITS,
    )
    split_dir: str | None = setting(
        READ.split_dir,
        "read the split from train/val/test files in DIR instead (train_list.txt or "
        "train_official.txt etc.; each line a name plus 14 labels in CheXNet order, or a "
        "name only for Data_Entry labels)",
        metavar="DIR",
    )
    val_fraction: float = setting(
        READ.val_fraction,
        "official split: fraction of train_val images carved out as validation, whole patients",
        metavar="F",
    )
    split_seed: int = setting(
        READ.split_seed, "official split: seed of the deterministic patient order for carving validation", metavar="S"
    )
    dataset: str = setting(
        READ.dataset,
        "read the data root as this data set (auto: detected from its files; docs/data.md)",
        choices=("auto", *DATASETS),
    )
    views: str = setting(
        READ.views,
        "views read (a run's: trained and scored on): frontal (any case, so CheXpert's Frontal too), all, or the "
        "data set's view codes such as PA,AP (an unknown code is refused, listing the data set's)",
        metavar="frontal|all|V,V",
    )
    uncertain: str = setting(
        "ignore",
        "uncertain labels (-1): ignore (masked out of that class's loss and AUC), zeros "
        "or ones (CheXpert's U-Ignore/U-Zeros/U-Ones); blank labels are negative",
        choices=UNCERTAIN_POLICIES,
    )
    labeler: str = setting(
        READ.labeler,
        "MIMIC-CXR-JPG only: the labels of mimic-cxr-2.0.0-chexpert.csv.gz or of "
        "-negbio.csv.gz (refused on other data sets)",
        choices=LABELERS,
    )
    readers: str = setting(
        READ.readers,
        "data sets with several readers per image (VinDr-CXR): a finding is positive when any "
        "reader marks it, or when most do (more than half of the image's readers)",
        choices=READER_RULES,
    )
    skip_bad: bool = setting(
        READ.skip_bad,
        "leave out and list the images of bad box/label rows (RSNA, VinDr: outside the image, "
        "empty, duplicated, unknown image) and unreadable or truncated images (in the cache's manifest), instead of "
        "stopping at the first",
    )
    class_names: str | None = setting(
        None,
        "the network's classes, comma-separated, in the data set's names (auto: all "
        "of the data set's; recorded in config.yaml)",
        flag="--classes",
        metavar="A,B,...",
    )
    label: str | None = setting(
        None, "train a single-label binary network for this finding (Sabottke & Spieler)", metavar="NAME"
    )
    seed: int = setting(0, "random seed", metavar="S")
    max_epochs: int = setting(100, "upper bound on epochs (early stopping usually ends first)", metavar="N")
    batch_size: int | None = setting(
        None,
        "global batch size over all devices (auto: 64 at 64 px, 12 at 1024 px, "
        "16 otherwise; timm archs: at most that, within the memory DenseNet-121 "
        "needs there)",
        metavar="B",
    )
    lr: float = setting(3e-4, "AdamW learning rate")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    lr_factor: float = setting(0.1, "factor the LR is multiplied by on a validation-loss plateau", metavar="F")
    lr_patience: int = setting(2, "epochs without validation-loss improvement before the LR is reduced", metavar="N")
    stop_patience: int = setting(10, "epochs without validation-loss improvement before training stops", metavar="N")
    accelerator: str = setting("auto", "where to train", choices=ACCELERATORS)
    devices: int = setting(1, "devices per node; N > 1 trains with DDP", metavar="N")
    nodes: int = setting(1, "machines (under torchrun or SLURM)", metavar="N")
    precision: str = setting(
        "auto",
        "auto: bf16-mixed on a GPU with bf16 (else 16-mixed) and on CPUs with native bf16 "
        "(AMX/AVX512-BF16), else 32-true",
        choices=PRECISIONS,
    )
    channels_last: bool | None = setting(
        None, "channels_last memory format (auto: on; 1.4x faster than NCHW for DenseNet-121 on a CPU too)"
    )
    deterministic: bool | None = setting(None, "deterministic algorithms (auto: on on CPU, off on GPU)")
    allow_missing: bool = setting(
        False, "train on the split's images present in the cache, dropping the others (counts go to config.yaml)"
    )
    # -- not part of the run's identity --
    out: str | None = setting(
        None, "run directory (default: runs/<arch>_<R>px_seed<S>[_<label>])", metavar="RUN_DIR", identity=False
    )
    cache: str | None = setting(
        None,
        "resolution cache, prepared if needed (default: a folder per data root under "
        "$CXRRES_CACHE_DIR, $XDG_CACHE_HOME/cxrres or ~/.cache/cxrres; docs/data.md)",
        metavar="DIR",
        identity=False,
    )
    num_workers: int | None = setting(
        None,
        "DataLoader workers per device (auto: 0 on CPU, up to 8 on GPU)",
        flag="--workers",
        metavar="N",
        identity=False,
    )
    progress: bool = setting(True, "progress bars (--quiet turns them off)", flag="--quiet", identity=False)

    def data_options(self) -> DataOptions:
        """How this run reads its data root: the data set, views and split it trains and is scored on."""
        return data_options(self)

    @property
    def classes(self) -> list[str]:
        """The network's outputs: the run's one label, else `class_names`, else the 14 NIH findings."""
        if self.label:
            return [self.label]
        return self.class_names.split(",") if self.class_names else list(CLASSES)


#: The data settings: the fields of `DataOptions` that are flags of every command reading data (and of TrainConfig),
#: in its order; their help, spelling and choices are TrainConfig's metadata, their defaults DataOptions'.
DATA_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in fields(DataOptions) if f.name in TrainConfig.__dataclass_fields__
)


def data_options(given: Any) -> DataOptions:
    """The DataOptions of a TrainConfig's or parsed flags' data settings (its defaults where absent or None)."""
    values = {name: getattr(given, name, None) for name in DATA_SETTINGS}
    return DataOptions(**{name: value for name, value in values.items() if value is not None})


#: Settings added after runs existed, at the values those runs implied: left out of `identity` at these values, so
#: older run directories resume (an NIH run at the defaults keeps its identity).
IMPLIED_BEFORE: dict[str, Any] = {
    "dataset": "nih",
    "views": "frontal",
    "uncertain": "ignore",
    "class_names": None,
    "labeler": LABELERS[0],
    "readers": "any",
    "skip_bad": False,
}


#: Settings that do not change what a run computes; a run directory may be resumed with other values.
NOT_IDENTITY: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig) if not f.metadata["identity"])
#: Settings a study sets per run (the grid); the rest may be shared through the study's `train:` mapping.
PER_RUN: tuple[str, ...] = ("data", "resolution_px", "arch", "seed", "label", "out")


# --- one spelling: flags <-> fields -------------------------------------------------------------------------------


def _value_type(name: str) -> type:
    """The non-None type of a TrainConfig field (int, float, str or bool)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    return args[0]


def flag_of(name: str) -> str:
    """The `cxrres train` flag of a TrainConfig field (--resolution for resolution_px, --workers for num_workers...)."""
    spec = next(f for f in fields(TrainConfig) if f.name == name)
    return spec.metadata["flag"] or "--" + name.replace("_", "-")


def _on_off(text: str) -> bool | None:
    """argparse type of the tri-state settings: on, off or auto."""
    values = {"on": True, "off": False, "auto": None}
    if text not in values:
        raise argparse.ArgumentTypeError(f"expected on, off or auto, got {text!r}")
    return values[text]


def _default_text(f: dataclasses.Field) -> str:
    return "auto" if f.default is None else str(f.default)


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...], with_defaults: bool = False) -> None:
    """Flags of the TrainConfig fields `names`; without defaults (None) where a config file and the recipe fill them."""
    for f in (f for f in fields(TrainConfig) if f.name in names):
        meta, kind = f.metadata, _value_type(f.name)
        flag = flag_of(f.name)
        default = f.default if with_defaults else None
        if f.name == "progress":
            parser.add_argument(
                flag, dest=f.name, action="store_const", const=False, default=None, help="no progress bar"
            )
        elif kind is bool and f.default is False:
            parser.add_argument(flag, dest=f.name, action="store_const", const=True, default=default, help=meta["help"])
        elif kind is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                type=_on_off,
                metavar="on|off|auto",
                default=default,
                help=f"{meta['help']} (default: auto)",
            )
        else:
            shown = "" if f.name in ("data", "resolution_px") else f" (default: {_default_text(f)})"
            parser.add_argument(
                flag,
                dest=f.name,
                type=kind,
                choices=meta["choices"],
                metavar=meta["metavar"],
                default=default,
                help=meta["help"] + shown,
            )


def add_data_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] = DATA_SETTINGS) -> None:
    """The flags of the data settings `names` (all by default), with DataOptions' defaults: every command that reads a
    data root gets its data flags here; `data_options(args)` turns them into the DataOptions it reads with."""
    add_arguments(parser, names, with_defaults=True)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, each defaulting to None so that a config file and the recipe can fill it."""
    add_arguments(parser, tuple(f.name for f in fields(TrainConfig)))
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of settings (keys as in config.yaml's `settings`); flags override it",
    )


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig settings given as flags (None where a flag was not given)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)}


def train_argv(config: TrainConfig) -> list[str]:
    """`cxrres train` arguments that reproduce `config`: data, resolution, and every setting that differs from its
    default."""
    args: list[str] = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name not in ("data", "resolution_px") and value == f.default:
            continue
        flag, kind = flag_of(f.name), _value_type(f.name)
        if f.name == "progress" or (kind is bool and f.default is False):
            args.append(flag)  # only reached when the value differs from the default
        elif kind is bool:
            args += [flag, {True: "on", False: "off", None: "auto"}[value]]
        else:
            args += [flag, str(value)]
    return args


# --- YAML settings ----------------------------------------------------------------------------------------------


#: What a value of each TrainConfig type is, as errors say it.
TYPE_WORDS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def checked_value(name: str, value: Any) -> Any:
    """A YAML value of TrainConfig field `name` checked as its flag checks it: the field's type (a float takes an
    integer, text a number; on/off/auto fields true, false, null or those words) and its choices; ValueError if not."""
    spec = next(f for f in fields(TrainConfig) if f.name == name)
    kind, choices = _value_type(name), spec.metadata["choices"]
    if value is None or (kind is bool and isinstance(value, bool)):
        return value
    if kind is bool and isinstance(value, str) and spec.default is None:
        return _on_off(value)
    try:  # text as the flag reads it (YAML reads 1e-4 as text), a whole float as an integer
        number = float(value) if kind in (int, float) and not isinstance(value, (bool, list, dict)) else None
    except ValueError:
        number = None
    fits = number is not None and (kind is float or number.is_integer()) if kind in (int, float) else True
    if kind is bool or not fits or kind is str and not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected {TYPE_WORDS[kind]}, got {value!r}")
    value = value if kind is int and isinstance(value, int) else kind(number) if kind in (int, float) else kind(value)
    if choices and value not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def checked_settings(mapping: dict[str, Any], what: str = "setting", path: str | Path | None = None) -> dict[str, Any]:
    """TrainConfig settings with every value checked (`checked_value`); one line naming the key (`what NAME: ...`),
    a DataFormatError naming the file too when they come from `path`."""
    out = {}
    for name, value in mapping.items():
        try:
            out[name] = checked_value(name, value)
        except (ValueError, argparse.ArgumentTypeError) as error:
            said = f"{what} {name}: {error}"
            raise (DataFormatError(Path(path), said) if path is not None else CxrresError(said)) from None
    return out


def config_from_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig settings from a YAML file (keys as TrainConfig fields), each value checked as its flag is."""
    return checked_settings(read_settings_yaml(path, {f.name for f in fields(TrainConfig)}), path=path)


def merge_settings(*layers: dict[str, Any]) -> TrainConfig:
    """TrainConfig from dataclass defaults overridden by each layer in turn (None values do not override)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    missing = [k for k in ("data", "resolution_px") if merged.get(k) is None]
    if missing:
        raise CxrresError(
            f"missing setting(s): {', '.join(missing)} (give --data DIR and --resolution R, or put them in --config)"
        )
    return TrainConfig(**merged)


# --- resolving --------------------------------------------------------------------------------------------------


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<arch>_<R>px_seed<S>[_<label>] (`timm:NAME` spelled timm-NAME: no colon in file names)."""
    label = f"_{config.label}" if config.label else ""
    return Path("runs") / f"{config.arch.replace(':', '-')}_{config.resolution_px}px_seed{config.seed}{label}"


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every automatic setting (batch size, precision, accelerator, run dir...) and validate the rest."""
    import torch

    c = dataclasses.replace(config)
    if c.resolution_px < 16:
        raise CxrresError(f"resolution must be at least 16 px, got {c.resolution_px}")
    check_arch(c.arch, c.resolution_px)
    if c.label is not None:  # NIH aliases resolved; checked against the data set's classes when it is read
        c.label = canonical_label(c.label) or c.label
    if c.precision not in PRECISIONS:
        raise CxrresError(f"unknown precision {c.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if c.accelerator == "auto":
        c.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if c.accelerator == "gpu" and not torch.cuda.is_available():
        raise CxrresError("--accelerator gpu: no CUDA device is available here")
    on_gpu = c.accelerator == "gpu"
    if c.precision == "auto":
        if on_gpu:
            c.precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            c.precision = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    c.precision = {"32": "32-true"}.get(c.precision, c.precision)
    c.channels_last = True if c.channels_last is None else c.channels_last
    c.deterministic = (not on_gpu) if c.deterministic is None else c.deterministic
    c.batch_size = c.batch_size or default_batch_size(c.arch, c.resolution_px)
    world = c.devices * c.nodes
    if c.batch_size % world:
        raise CxrresError(f"batch size {c.batch_size} is not divisible by {world} devices")
    if c.num_workers is None:
        c.num_workers = 0 if not on_gpu else min(8, max(1, (os.cpu_count() or 1) // c.devices))
    c.data = str(Path(c.data).expanduser().resolve())
    if c.weights not in ("imagenet", "none"):
        c.weights = str(Path(c.weights).expanduser().resolve())
    elif c.weights == "imagenet" and is_timm(c.arch):  # refused offline before the run directory is written
        from cxrres.models.timm_backbones import timm_imagenet_file

        timm_imagenet_file(c.arch.split(":", 1)[1])
    c.out = str(Path(c.out or default_run_dir(c)).expanduser().resolve())
    return c


def identity(config: TrainConfig) -> dict[str, Any]:
    """The settings that define what a run computes (newer settings at their `IMPLIED_BEFORE` values left out)."""
    return {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in NOT_IDENTITY and not (k in IMPLIED_BEFORE and IMPLIED_BEFORE[k] == v)
    }
