"""Source decode alone vs decode + area-resize to every resolution + writing the caches, at 1 and N workers."""

from __future__ import annotations

import argparse
import os
import tempfile

from benchmarks.common import best_of, record, source_images
from cxrres.data.cache import prepare_cache
from cxrres.data.images import read_grey
from cxrres.util.parallel import ordered_map


def _decode(path: str) -> int:
    return int(read_grey(path).shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="32,64,128,256,512,1024")
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    paths, what = source_images(args.images)
    data = paths[0].parent.parent
    n = len(paths)
    rows = [
        "| Workers | decode only (img/s) | decode + all resolutions written (img/s) | full / decode time |",
        "|---|---|---|---|",
    ]
    for workers in sorted({1, os.cpu_count() or 1}):
        decode = best_of(lambda: list(ordered_map(_decode, [str(p) for p in paths], workers)), 2)

        def full() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                prepare_cache(data, args.resolutions, f"{tmp}/cache", workers=workers, progress=False)

        total = best_of(full, 2)
        rows.append(f"| {workers} | {n / decode:,.1f} | {n / total:,.1f} | {total / decode:.2f} |")
        print(rows[-1], flush=True)
    record(
        "Prepare: decode vs decode + resize + write",
        "\n".join(rows),
        f"{what}; resolutions {args.resolutions} px; `full` includes scanning the data root, fingerprinting and the "
        "manifest. Missing listed images (the real data root lists 112,120) are only counted.",
    )


if __name__ == "__main__":
    main()
