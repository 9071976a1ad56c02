"""The bottom layer: atomic file writes, process pools, safe file names (no cxrres import but errors)."""
