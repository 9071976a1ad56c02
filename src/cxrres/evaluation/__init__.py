"""Evaluation: pure metrics (AUC, DeLong, bootstrap, Holm), operating points, a run's AUC table, comparisons, seeds,
the published tables, external and adjudicated references. Never imports Lightning."""
