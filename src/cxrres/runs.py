"""The run- and study-directory schema: every file name and record type in one place.

A run directory holds
- `config.yaml` — `settings` (every resolved training setting), `identity` (the settings that define the run),
  `data` (root, split, images per part), `cache`, `versions`;
- `checkpoints/best.ckpt` (best validation mean AUC) and `checkpoints/last.ckpt` (end of the last epoch);
- `metrics.csv` — one row per epoch: epoch, train_loss, val_loss, val_mean_auc, lr, val_auc_<class>...;
- `run.json` — `RunStatus`: status (`running`, `finished`, `failed`), best epoch, cost (wall time, images/s,
  peak memory, device), and the thread count and CPU kernel family the run computed with;
- `predictions_test.csv` — `image`, `patient_id` (the image's patient, by which the bootstrap resamples; files
  written before it was recorded lack it), one probability column per class, one `label_<class>` column per class
  (1, 0, or -1 where the label is masked out of that class's metrics: uncertain under `uncertain: ignore`);
  `predictions_val.csv` the same for the validation part (where operating points are chosen);
- `operating_points.csv` — per class the threshold of a positive call (positive when probability >= threshold) and
  its validation sensitivity/specificity, chosen once when the run is trained (Youden's J on `predictions_val.csv`);
  `cxrres predict`, the model card and `cxrres verify` read it, nothing rewrites it;
- `auc.csv` and `calibration.csv` (cxrres evaluate: AUC; average precision, Brier score, ECE),
  `auc_by_test_resolution.csv` (cxrres evaluate --test-resolution), `auc_google2019.csv`
  (cxrres evaluate --reference google2019), `localization.csv`, `localization_samples.csv`, `localization_examples/`
  (cxrres localize);
- `external_test/<dataset>-<root hash>/` (cxrres evaluate --data OTHER_ROOT): `predictions_test.csv` and `auc.csv` of
  the run on another data set's test part, over the classes both have;
- `skipped_rows.txt` — only under `skip_bad`, when the data set had bad box/label rows: one `file:line: problem` per
  row whose image the run's data left out (written by train and localize);
- `logs/` — CSV and TensorBoard logs from Lightning;
- `.lock` — flock'ed by the `cxrres train` process writing the run, naming its pid and host
  (`cxrres.training.checkpoints`).

A study directory holds `study.yaml`, `runs/<run>/` (run directories), `comparison/` (cxrres compare),
`key_results.md`, `report.html`, `report.md` and `report_files/`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cxrres.config import TrainConfig
from cxrres.data.cache_store import root_hash
from cxrres.data.datasets import detect_dataset
from cxrres.errors import CxrresError, DataFormatError
from cxrres.util.parallel import write_json_atomic, write_text_atomic

# -- a run directory --
CONFIG = "config.yaml"
STATUS = "run.json"
METRICS = "metrics.csv"
PREDICTIONS = "predictions_test.csv"
PREDICTIONS_VAL = "predictions_val.csv"
OPERATING_POINTS = "operating_points.csv"
CHECKPOINTS = "checkpoints"
BEST = "best.ckpt"
LAST = "last.ckpt"
LOGS = "logs"
AUC = "auc.csv"
CALIBRATION = "calibration.csv"  # cxrres evaluate: per class average precision, Brier score, ECE
AUC_BY_TEST_RESOLUTION = "auc_by_test_resolution.csv"  # cxrres evaluate --test-resolution
LOCALIZATION = "localization.csv"
LOCALIZATION_SAMPLES = "localization_samples.csv"
LOCALIZATION_EXAMPLES = "localization_examples"
AUC_GOOGLE2019 = "auc_google2019.csv"  # cxrres evaluate --reference google2019
EXTERNAL_TEST = "external_test"  # <dataset>-<root hash>/ per other data set: auc.csv, predictions_test.csv
#: Columns of an external_test/.../auc.csv beside evaluate's: the other data set's name and root, and which of its
#: classes was scored as the run's `class`.
EXTERNAL_DATASET, EXTERNAL_ROOT, EXTERNAL_CLASS = "dataset", "data_root", "dataset_class"
SKIPPED_ROWS = "skipped_rows.txt"
LABEL_PREFIX = "label_"
#: The optional column of a predictions file that names each image's patient.
PATIENT_COLUMN = "patient_id"
#: Values of a `label_<class>` column: positive, negative, masked out of that class (uncertain under `ignore`).
LABEL_VALUES: tuple[int, ...] = (1, 0, -1)

# -- a study directory --
STUDY_FILE = "study.yaml"
STUDY_RUNS = "runs"
COMPARISON = "comparison"
KEY_TABLE = "key_results.md"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report_files"
SLURM = "slurm"  # STUDY/slurm/: the sbatch scripts, jobs.json and logs/ of --executor slurm
SLURM_JOBS = "jobs.json"


def external_dir(run_dir: str | Path, dataset: str, data_root: str | Path) -> Path:
    """RUN/external_test/<dataset>-<root hash>/: where a run's scores on another data root go."""
    return Path(run_dir) / EXTERNAL_TEST / f"{dataset}-{root_hash(data_root)}"


def external_scored(run_dir: str | Path, data: str | Path, dataset: str | None = None) -> bool:
    """Whether the run has a complete external auc.csv for the data root `data` (False if the root cannot be read)."""
    try:
        name = dataset or detect_dataset(data)
    except CxrresError:
        return False
    return (external_dir(run_dir, name, data) / AUC).is_file()


def read_external_aucs(run_dir: str | Path) -> list[pd.DataFrame]:
    """Every complete external auc.csv of a run (one per other data root it was scored on), in folder-name order."""
    return [pd.read_csv(path) for path in sorted((Path(run_dir) / EXTERNAL_TEST).glob(f"*/{AUC}"))]


def result_dir(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Where a command that reads a run writes its tables: `out` (created) when given, else the run directory when it
    can be written; None, after one warning line suggesting --out, when it cannot (reading never needs writing)."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out)
    try:
        with tempfile.TemporaryFile(dir=run_dir):
            return Path(run_dir)
    except OSError as error:
        print(
            f"warning: {run_dir}: cannot write here ({error.strerror}); the results are printed, not saved; "
            "add --out DIR to save them elsewhere",
            file=sys.stderr,
        )
        return None


def write_yaml_atomic(path: Path, payload: dict) -> None:
    """Write `payload` as YAML via a temporary file and a rename."""
    write_text_atomic(path, yaml.safe_dump(payload, sort_keys=False))


def read_config(run_dir: str | Path) -> dict:
    """The run's config.yaml; CxrresError if `run_dir` is not a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise CxrresError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DataFormatError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict) or "settings" not in config:
        raise DataFormatError(path, "no `settings` section; not written by cxrres train")
    return config


def write_skipped_rows(run_dir: str | Path, rows: tuple[str, ...] | list[str]) -> None:
    """skipped_rows.txt: the bad metadata rows left out of the run's data, one per line (atomically); removed when
    none."""
    path = Path(run_dir) / SKIPPED_ROWS
    if rows:
        write_text_atomic(path, "".join(f"{row}\n" for row in rows))
    elif path.is_file():
        path.unlink()


def recorded_cache_dir(run_dir: str | Path) -> str | None:
    """The cache directory the run trained from (config.yaml's `cache.dir`), if it recorded one."""
    return (read_config(run_dir).get("cache") or {}).get("dir")


def read_settings(run_dir: str | Path) -> TrainConfig:
    """The run's resolved settings (config.yaml's `settings`) as a TrainConfig."""
    settings = read_config(run_dir)["settings"]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in settings.items() if k in known})


@dataclass
class RunStatus:
    """run.json: where a run stands and what it cost so far."""

    status: str = "not started"  # running | finished | failed | interrupted (SIGTERM; resumable)
    updated: str | None = None  # local time, ISO 8601
    epochs: int = 0
    best_epoch: int | None = None
    best_val_mean_auc: float | None = None
    wall_seconds: float | None = None  # training and validation epochs, summed over resumptions
    train_images_per_s: float | None = None
    peak_memory_mb: float | None = None
    device: str | None = None
    world_size: int | None = None
    # What decides a CPU run's last bits (docs/training.md, reproducibility); absent in run.json written before them:
    threads: int | None = None  # torch.get_num_threads() of the training process (rank 0)
    cpu_kernels: str | None = None  # torch.backends.cpu.get_cpu_capability(): the kernel family (AVX2, AVX512, ...)
    onednn_max_cpu_isa: str | None = None  # $ONEDNN_MAX_CPU_ISA when set (caps oneDNN's kernels, e.g. AVX512_CORE)
    test_images: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set (run.json leaves the others out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def read_status(run_dir: str | Path) -> RunStatus:
    """The run's run.json (a `not started` status when it has none yet), validated field by field (DataFormatError
    naming the file and the field)."""
    path = Path(run_dir) / STATUS
    if not path.is_file():
        return RunStatus()
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(
            path, f"not valid JSON ({str(error).splitlines()[0]}); delete it and rerun `cxrres train`"
        ) from None
    if not isinstance(payload, dict):
        raise DataFormatError(path, "not a JSON object; delete it and rerun `cxrres train`")
    known = {f.name for f in dataclasses.fields(RunStatus)}
    fields = {k: v for k, v in payload.items() if k in known}
    for name, value in fields.items():
        kinds = _STATUS_TYPES[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise DataFormatError(
                path, f"field `{name}` is {value!r}, expected {' or '.join(k.__name__ for k in kinds)}"
            )
        if name in ("epochs", "best_epoch", "world_size", "test_images") and value is not None and value < 0:
            raise DataFormatError(path, f"field `{name}` is {value!r}, expected a count >= 0")
    if fields.get("status", "not started") not in STATUS_VALUES:
        raise DataFormatError(
            path, f"field `status` is {fields['status']!r}, expected one of {', '.join(STATUS_VALUES)}"
        )
    return RunStatus(**fields)


#: The values run.json's `status` may take, and the JSON types of each of its fields (validated on read).
STATUS_VALUES: tuple[str, ...] = ("not started", "running", "finished", "failed", "interrupted")
_STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "updated": (str,),
    "epochs": (int,),
    "best_epoch": (int,),
    "best_val_mean_auc": (int, float),
    "wall_seconds": (int, float),
    "train_images_per_s": (int, float),
    "peak_memory_mb": (int, float),
    "device": (str,),
    "world_size": (int,),
    "threads": (int,),
    "cpu_kernels": (str,),
    "onednn_max_cpu_isa": (str,),
    "test_images": (int,),
    "error": (str,),
}


def write_status(run_dir: str | Path, status: RunStatus) -> None:
    """Write run.json atomically."""
    write_json_atomic(Path(run_dir) / STATUS, status.to_json())


def is_trained(run_dir: str | Path) -> bool:
    """Whether the run finished training and wrote its test predictions."""
    return read_status(run_dir).status == "finished" and (Path(run_dir) / PREDICTIONS).is_file()


@dataclass(frozen=True)
class Predictions:
    """Test predictions of one run: image names, class names, (N, C) probabilities, (N, C) labels: 1, 0, or
    -1 where the label is masked out of that class (uncertain, `uncertain: ignore`), and each image's patient id
    (as text; None in files written before it was recorded)."""

    images: list[str]
    classes: list[str]
    scores: np.ndarray
    labels: np.ndarray
    patient_ids: list[str] | None = None

    def to_frame(self) -> pd.DataFrame:
        """The predictions_test.csv table."""
        frame = pd.DataFrame({"image": self.images})
        if self.patient_ids is not None:
            frame[PATIENT_COLUMN] = [str(p) for p in self.patient_ids]
        for c, name in enumerate(self.classes):
            frame[name] = self.scores[:, c]
        for c, name in enumerate(self.classes):
            frame[LABEL_PREFIX + name] = self.labels[:, c].astype(np.int8)
        return frame


#: Probabilities and thresholds are float32; 9 significant digits write every float32 exactly, so what a reader parses
#: (and casts to float32) is the value cxrres compared.
PROBABILITY_FORMAT = "%.9g"


def as_float32(values: np.ndarray) -> np.ndarray:
    """Parsed probabilities or thresholds as the float32 values cxrres used (exact for PROBABILITY_FORMAT files)."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def write_csv_atomic(path: Path, frame: pd.DataFrame, float_format: str | None = None) -> None:
    """A DataFrame as CSV without its index, written atomically; floats by default in their shortest exact form (what
    a reader parses is the value cxrres computed)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=float_format)
    write_text_atomic(path, buffer.getvalue())


def write_predictions(path: Path, predictions: Predictions) -> None:
    """Write predictions_test.csv atomically (float32 probabilities, exactly: PROBABILITY_FORMAT)."""
    write_csv_atomic(path, predictions.to_frame(), PROBABILITY_FORMAT)


def read_predictions(run_dir: str | Path, name: str = PREDICTIONS) -> Predictions:
    """A run's predictions file (test part by default), validated: one score and one label column per class, labels
    1/0/-1 (masked), scores finite, and patient ids (where the file has them) not blank."""
    path = Path(run_dir) / name
    if not path.is_file() and not (Path(run_dir) / CONFIG).is_file():
        raise CxrresError(f"{run_dir}: not a run directory (no {CONFIG}, no {name})")
    if not path.is_file():
        raise CxrresError(
            f"{run_dir}: no {name}; the run has not finished (rerun `cxrres train` with the same settings)"
        )
    try:
        frame = pd.read_csv(path, dtype={PATIENT_COLUMN: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"not a readable CSV ({str(error).splitlines()[0]})") from None
    if not len(frame.columns) or frame.columns[0] != "image":
        raise DataFormatError(path, "first column must be `image`", 1)
    classes = [c for c in frame.columns[1:] if not c.startswith(LABEL_PREFIX) and c != PATIENT_COLUMN]
    missing = [c for c in classes if LABEL_PREFIX + c not in frame.columns]
    extra = [c for c in frame.columns if c.startswith(LABEL_PREFIX) and c[len(LABEL_PREFIX) :] not in classes]
    if not classes or missing or extra:
        raise DataFormatError(
            path,
            f"score and label columns do not pair up (classes {classes}; no label for {missing}; "
            f"labels without scores {extra})",
            1,
        )
    scores = as_float32(frame[classes].to_numpy(np.float64))
    labels = frame[[LABEL_PREFIX + c for c in classes]].to_numpy()
    bad = ~np.isfinite(scores)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataFormatError(path, "score is empty, NaN or infinite", row + 2)
    if not np.isin(labels, LABEL_VALUES).all():
        row = int(np.flatnonzero((~np.isin(labels, LABEL_VALUES)).any(axis=1))[0])
        raise DataFormatError(path, "labels must be 1, 0 or -1 (masked out)", row + 2)
    if frame["image"].duplicated().any():
        raise DataFormatError(path, f"image {frame['image'][frame['image'].duplicated()].iloc[0]} appears twice")
    patients = None
    if PATIENT_COLUMN in frame.columns:
        blank = frame[PATIENT_COLUMN].isna().to_numpy() | (frame[PATIENT_COLUMN].str.strip() == "").to_numpy()
        if blank.any():
            raise DataFormatError(path, f"{PATIENT_COLUMN} is empty", int(np.flatnonzero(blank)[0]) + 2)
        patients = frame[PATIENT_COLUMN].tolist()
    return Predictions(frame["image"].astype(str).tolist(), classes, scores, labels.astype(np.int8), patients)
