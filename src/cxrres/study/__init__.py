"""The study: its file, its grid of runs and their state, the local executor, and the SLURM executor (`slurm/`)."""
