"""`cxrres prepare --dry-run`: what a prepare would build, reuse and need on disk, from the sources' headers alone
(nothing is decoded or written)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


from cxrres.data.cache import Sources, parse_resolutions
from cxrres.data.diskspace import cache_bytes_needed
from cxrres.data.cache_store import (
    default_cache_dir,
)
from cxrres.data.datasets import detect_dataset
from cxrres.data.layout import DataRoot


@dataclass(frozen=True)
class PreparePlan:
    """What `prepare_cache` would do, computed without writing: counts, bytes per resolution, free space."""

    cache_dir: Path
    listed: int  # images the metadata lists
    present: int  # of those, found on disk
    bytes_present: dict[int, int]  # resolution px -> bytes of its array for the images present
    bytes_listed: dict[int, int]  # resolution px -> bytes for every listed image (the full data set)
    free_bytes: int

    def to_text(self) -> str:
        """One line per resolution and a total, in GB (10^9 bytes)."""
        gb = lambda n: f"{n / 1e9:,.2f} GB"  # noqa: E731
        lines = [
            f"cache {self.cache_dir}: {self.present:,} of {self.listed:,} listed images present; "
            f"{gb(self.free_bytes)} free there",
            f"{'resolution':>10} {'present':>12} {'all listed':>12}",
        ]
        for r in self.bytes_present:
            lines.append(f"{r:>7} px {gb(self.bytes_present[r]):>12} {gb(self.bytes_listed[r]):>12}")
        total_present = cache_bytes_needed(self.present, self.bytes_present)
        total_listed = cache_bytes_needed(self.listed, self.bytes_present)
        lines.append(f"{'total':>10} {gb(total_present):>12} {gb(total_listed):>12} (with the index)")
        fits = "fits" if total_present <= self.free_bytes else "does NOT fit"
        lines.append(f"the cache of the present images {fits} in the free space")
        return "\n".join(lines)


def plan_prepare(
    data_dir: str | Path | DataRoot,
    resolutions_px: Iterable[int],
    cache_dir: str | Path | None = None,
    dataset: str | None = None,
    skip_bad: bool = False,
) -> PreparePlan:
    """The bytes a cache would take at each resolution for the present and for all listed images; writes nothing."""
    data = data_dir if isinstance(data_dir, DataRoot) else DataRoot.at(data_dir)
    resolutions = parse_resolutions(resolutions_px)
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir(data.root)
    sources = Sources.scan(data, dataset or detect_dataset(data.root), skip_bad)
    present, listed = len(sources.names), len(sources.names) + len(sources.missing)
    probe = cache
    while not probe.exists():
        probe = probe.parent
    return PreparePlan(
        cache,
        listed,
        present,
        {r: present * r * r for r in resolutions},
        {r: listed * r * r for r in resolutions},
        shutil.disk_usage(probe).free,
    )
