"""Training one run with the study's recipe (Lightning loop, callbacks, checkpoints)."""
