"""`cxrres study --executor slurm`: generated sbatch scripts (`scripts`) and the calls to SLURM that submit them,
record their ids and read their states (`queue`). Files go to STUDY/slurm/; docs/cluster.md."""

from cxrres.study.slurm.queue import (
    Submission,
    describe_jobs,
    job_states,
    read_submissions,
    sbatch,
    submission_lines,
    submit_study,
    wait_for,
)
from cxrres.study.grid import SlurmOptions, options_mapping, slurm_options
from cxrres.study.slurm.scripts import (
    prepare_script,
    report_script,
    slurm_dir,
    tasks_per_node,
    train_script,
)

__all__ = [
    "SlurmOptions",
    "Submission",
    "describe_jobs",
    "job_states",
    "options_mapping",
    "prepare_script",
    "read_submissions",
    "report_script",
    "sbatch",
    "slurm_dir",
    "slurm_options",
    "submission_lines",
    "submit_study",
    "tasks_per_node",
    "train_script",
    "wait_for",
]
