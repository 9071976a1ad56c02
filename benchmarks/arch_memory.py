"""Training memory per image of each architecture family: peak resident memory of one forward + backward pass on the
CPU (float32, NCHW, one thread), at two batch sizes and two resolutions, each in a fresh process.

Per image = (peak at the larger batch - peak at the smaller) / (difference of the batch sizes): the model, its gradients
and the libraries cancel out. The peak is the child's `resource.getrusage(RUSAGE_SELF).ru_maxrss`. The fit per family
is m(R) = a + b (R / 64 px)^2 MiB per image (activations grow with the pixel count);
`cxrres.models.timm_backbones.MEMORY_MIB` holds the fitted (a, b) and `config.resolve` turns them into the default batch
size of timm architectures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, torch
torch.set_num_threads(1)
from cxrres.models.registry import create_model
arch, resolution, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = create_model(arch, 14, weights="none").train()
x = torch.randn(batch, 3, resolution, resolution)
model(x).float().sum().backward()
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

#: One representative model per family (the per-image memory of other sizes of a family scales with their width).
FAMILIES: dict[str, str] = {
    "DenseNet-121": "densenet121",
    "ResNet-34": "resnet34",
    "ConvNeXt": "timm:convnext_tiny",
    "EfficientNet": "timm:efficientnet_b0",
    "ViT": "timm:vit_small_patch16_224",
}


def peak_mib(arch: str, resolution: int, batch: int) -> float:
    """Peak resident memory (MiB) of a fresh process that builds `arch` and runs one forward + backward pass."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, arch, str(resolution), str(batch)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"{arch} at {resolution} px, batch {batch} failed: {result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="64,128", help="two resolutions, px (default: %(default)s)")
    parser.add_argument("--batches", default="2,10", help="two batch sizes (default: %(default)s)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="families to measure (default: all)")
    parser.add_argument("--no-record", action="store_true", help="print the table without appending it to RESULTS.md")
    args = parser.parse_args()
    (r1, r2), (b1, b2) = (
        tuple(int(v) for v in args.resolutions.split(",")),
        tuple(int(v) for v in args.batches.split(",")),
    )
    rows = [
        f"| Family (model) | MiB/image at {r1} px | MiB/image at {r2} px | fit a (MiB) | fit b (MiB per (R/64)^2) |",
        "|---|---|---|---|---|",
    ]
    fits = {}
    for family in args.families.split(","):
        arch = FAMILIES[family]
        per_image = [(peak_mib(arch, r, b2) - peak_mib(arch, r, b1)) / (b2 - b1) for r in (r1, r2)]
        u1, u2 = (r1 / 64) ** 2, (r2 / 64) ** 2
        b = (per_image[1] - per_image[0]) / (u2 - u1)
        a = per_image[0] - b * u1
        fits[family] = (round(a, 2), round(b, 2))
        rows.append(f"| {family} ({arch}) | {per_image[0]:.1f} | {per_image[1]:.1f} | {a:.2f} | {b:.2f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    notes = (
        f"Batches {b1} and {b2}, one forward + backward pass, float32 NCHW, 1 thread, 14 outputs. Fitted (a, b): "
        f"{json.dumps(fits)}."
    )
    if args.no_record:
        print(table + "\n\n" + notes)
    else:
        from benchmarks.common import record

        record("Memory per training image by architecture family (issue 26)", table, notes)


if __name__ == "__main__":
    main()
