"""Presentation: tables, figures, the comparison files and the study report. Reads run directories; computes nothing
that `cxrres.evaluate`, `cxrres.compare` or `cxrres.localize` do not already write."""
