"""DeLong intervals for a CheXNet-sized test set (22,433 images x 14 classes) and the pairwise tests of 5 runs."""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from benchmarks.common import best_of, record
from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=22_433)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.random((args.cases, 14)) < 0.05
    groups = rng.integers(0, args.cases // 4, args.cases)
    scores = [labels * (0.5 + 0.2 * k) + rng.normal(size=labels.shape) for k in range(args.runs)]
    intervals = best_of(lambda: [metrics.delong_ci(labels[:, c], scores[0][:, c]) for c in range(14)])
    pairs = list(itertools.combinations(range(args.runs), 2))
    paired = best_of(
        lambda: [
            metrics.delong_paired(labels[:, c], scores[a][:, c], scores[b][:, c]) for a, b in pairs for c in range(14)
        ],
        1,
    )
    start = time.perf_counter()
    weights = bootstrap.patient_weights(groups, args.n_boot, 0)
    defined = np.ones(14, bool)
    replicates = [bootstrap.bootstrap_class_replicates(labels, s, weights, defined) for s in scores]
    for a, b in pairs:
        bootstrap.paired_bootstrap_p(
            bootstrap.replicate_means(replicates[a], defined) - bootstrap.replicate_means(replicates[b], defined)
        )
    bootstrap_s = time.perf_counter() - start
    table = "\n".join(
        [
            "| Work | Seconds |",
            "|---|---|",
            f"| DeLong AUC + 95% interval, {args.cases:,} cases × 14 classes | {intervals:.3f} |",
            f"| paired DeLong tests, {len(pairs)} pairs of {args.runs} runs × 14 classes | {paired:.3f} |",
            f"| patient bootstrap ({args.n_boot} replicates) of the mean AUC for {args.runs} runs and all {len(pairs)} "
            f"paired differences | {bootstrap_s:.1f} |",
        ]
    )
    record(
        "Metrics: DeLong and bootstrap at CheXNet test size",
        table,
        "Random scores with 5 % positives; best of 3 for the intervals. The bootstrap computes each run's replicates "
        "once (one sort per class, all replicates at once) and reuses them for every pair.",
    )


if __name__ == "__main__":
    main()
