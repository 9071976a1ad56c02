"""Best-of-3 images/s of `prepare_cache` (all six resolutions, 2 workers) on the current checkout, for A/B runs of
two versions of the data layer: alternate `git stash` / `git stash pop` (or two checkouts) and run this each time."""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.common import source_images
from cxrres.data.cache import prepare_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("label", help="what this checkout is, printed with the figures")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths, what = source_images(400)
    rates = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            report = prepare_cache(
                paths[0].parent.parent, (32, 64, 128, 256, 512, 1024), f"{tmp}/c", workers=args.workers, progress=False
            )
            rates.append(report.n_images / (time.perf_counter() - start))
    print(
        f"{args.label}: {', '.join(f'{r:.1f}' for r in rates)} img/s ({report.n_images} images of the data root of "
        f"{what}, {args.workers} workers)"
    )


if __name__ == "__main__":
    main()
