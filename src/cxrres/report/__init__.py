"""Presentation: tables, figures, the comparison files and the study report. Reads run directories; computes nothing
that `cxrres.evaluation.evaluate`, `cxrres.evaluation.compare` or `cxrres.localization.localize` do not already
write."""
