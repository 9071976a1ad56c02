"""The study plan is the one list every executor reads: each step's command line, parsed by cxrres's own parser, gives
back exactly the step's settings (so the local executor, --plan and the sbatch scripts cannot disagree); --dry-run,
--plan and the scripts are renderings of it."""

from __future__ import annotations

import shlex
from pathlib import Path

from cxrres import commands, runs
from cxrres.cli import build_parser
from cxrres.study.grid import GRID_FLAGS, TRAIN_FLAGS, study_settings, write_study_file
from cxrres.study.plan import COMMANDS, KINDS, describe_plan, plan_commands, study_plan
from cxrres.study.slurm import SlurmOptions, prepare_script, report_script, train_script

from conftest import MINI

STUDY_FILE = (
    f"train:\n  weights: none\n  max_epochs: 2\n  allow_missing: true\n  split_dir: {MINI / 'splits'}\n"
    "localize:\n  method: hirescam\n  threshold: 0.35\n  iou: 0.25\n  examples: 1\n"
    "n_boot: 123\ntest_resolutions: [48, 96]\n"
)


def _study(tmp_path: Path):
    config = tmp_path / "study.yaml"
    config.write_text(STUDY_FILE)
    other = tmp_path / "other-root"
    other.mkdir()
    flags = {"data": str(MINI), "resolutions": "32,64", "out": str(tmp_path / "s"), "external": str(other)}
    study = study_settings(config, flags)
    write_study_file(study)
    return study


def _study_again(argv: list[str]):
    """The study a `cxrres study ...` argument list describes, as the command builds it."""
    args = build_parser().parse_args(argv)
    return args, study_settings(args.config, {name: getattr(args, name) for name in GRID_FLAGS + TRAIN_FLAGS})


def test_every_step_line_parses_back_to_the_steps_settings(tmp_path: Path) -> None:
    study = _study(tmp_path)
    steps = study_plan(study)
    kinds = [s.kind for s in steps]
    assert kinds[0] == "prepare" and kinds[-1] == "report" and set(kinds) == set(KINDS)
    per_run = [s.kind for s in steps if s.run == steps[1].run]
    assert per_run == ["train", "evaluate", "test_resolution", "external", "localize"]
    assert len(steps) == 2 + 2 * 5  # two runs (32 and 64 px), each with all five run steps
    functions = {"study": commands.study, "train": commands.train, "evaluate": commands.evaluate}
    functions["localize"] = commands.localize
    for step in steps:
        args = build_parser().parse_args(step.argv())
        assert args.func is functions[COMMANDS[step.kind]], step.kind
        for name, value in step.settings:
            assert getattr(args, name) == value, (step.kind, name)
        if step.run is not None and step.kind != "train":
            assert args.run_dir == step.run
    localize = next(s for s in steps if s.kind == "localize")
    assert dict(localize.settings) == {"method": "hirescam", "threshold": 0.35, "iou": 0.25, "examples": 1}
    external = next(s for s in steps if s.kind == "external")
    assert dict(external.settings) == {"data": str(tmp_path / "other-root"), "n_boot": 123, "allow_missing": True}
    assert next(s for s in steps if s.kind == "test_resolution").setting("test_resolution") == "48,96"
    for step in (steps[0], steps[-1]):  # prepare and report: the same study, read back from study.yaml
        args, again = _study_again(step.argv())
        assert again == study and args.step == ("prepare" if step.kind == "prepare" else None)


def test_dry_run_plan_and_scripts_render_the_same_steps(tmp_path: Path) -> None:
    study = _study(tmp_path)
    steps = study_plan(study)
    shown = describe_plan(study, steps).splitlines()
    assert shown[0].split()[1:] == "not started left: train, evaluate, test resolutions, localize, external 1/1".split()
    plan = plan_commands(study, steps).splitlines()
    trains = [s.command_line() for s in steps if s.kind == "train"]
    assert [line for line in plan if line.startswith("cxrres train ")] == trains
    assert [line for line in plan if line.startswith("cxrres evaluate ")] == [
        s.command_line() for s in steps if s.kind == "external"
    ]
    assert shlex.split(plan[-1])[1:] == steps[-1].argv()
    script, names = train_script(study, SlurmOptions(), python="py")
    assert names == [Path(str(s.run)).name for s in steps if s.kind == "train"]
    tasks = [line.split("set -- ", 1)[1].removesuffix(" ;;") for line in script.splitlines() if "set -- " in line]
    assert ["cxrres " + t for t in tasks] == trains
    for render, step in ((prepare_script, steps[0]), (report_script, steps[-1])):
        last = render(study, SlurmOptions(), python="py").rstrip().splitlines()[-1]
        assert shlex.split(last)[3:] == [*step.argv(), "--quiet"]  # after "$PYTHON" -m cxrres.cli


def test_done_steps_leave_the_plan(tmp_path: Path) -> None:
    """A trained, evaluated run keeps only what is left; the dry run and the train script agree."""
    study = _study(tmp_path)
    run = Path(next(s.run for s in study_plan(study) if s.kind == "train"))
    run.mkdir(parents=True)
    runs.write_status(run, runs.RunStatus(status="finished", epochs=2))
    (run / runs.PREDICTIONS).write_text("")
    for name in (runs.AUC, runs.CALIBRATION):
        (run / name).write_text("")
    steps = study_plan(study)
    left = [s.kind for s in steps if s.run == str(run) and not s.done]
    assert left == ["test_resolution", "external", "localize"]
    assert describe_plan(study, steps).splitlines()[0].split()[1:] == (
        "trained left: test resolutions, localize, external 1/1".split()
    )
    assert train_script(study, SlurmOptions(), python="py")[1] == [
        Path(study.out, "runs", "densenet121_64px_seed0").name
    ]


def test_every_section_of_a_study_file_is_checked_at_load(tmp_path: Path) -> None:
    """A wrong key or value anywhere in the study file is one line naming the file and the key, before any run."""
    cases = {
        "seeds: [a]": "seeds: expected an integer >= 0, got 'a'",
        "n_boot: -5": "n_boot: expected an integer >= 1, got -5",
        "resolutions: 64": "resolutions: give a list",
        "archs: [foo]": "unknown architecture 'foo'",
        "slurm: {partitionn: gpu}": "unknown slurm setting 'partitionn'",
        "slurm: {gpus_per_run: -1}": "slurm setting gpus_per_run must be >= 0",
        "train: {lr: abc}": "train setting lr: expected a number, got 'abc'",
        "train: {precision: bf16}": "train setting precision: expected one of auto, 32,",
        "train: {allow_missing: maybe}": "train setting allow_missing: expected true or false",
        "localize: {exampels: 1}": "unknown localize setting 'exampels'",
        "test_resolutions: [7]": "test_resolutions: 7 px out of range",
    }
    config = tmp_path / "bad.yaml"
    for body, said in cases.items():
        config.write_text(body + "\n")
        try:
            study_settings(config, {"data": str(MINI), "out": str(tmp_path / "s")})
        except Exception as error:  # noqa: BLE001 (the type is asserted below)
            assert type(error).__name__ == "DataFormatError" and str(error).count(str(config)) == 1, (body, error)
            assert said in str(error), (body, str(error))
        else:
            raise AssertionError(f"accepted: {body}")
    assert not (tmp_path / "s").exists()
    config.write_text("train: {lr: 1e-4, max_epochs: '3', precision: 32}\nseeds: '0,1'\n")  # as the flags read them
    study = study_settings(config, {"data": str(MINI), "out": str(tmp_path / "s")})
    assert study.train == {"lr": 0.0001, "max_epochs": 3, "precision": "32"} and study.seeds == (0, 1)
