"""cxrres: the chest X-ray resolution study (Wollek et al., 2023) on ChestX-ray14, end to end."""

__version__ = "0.1.0"
