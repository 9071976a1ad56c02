"""Draw docs/images/phantom.png: phantom images at 1024 px with their true boxes (run from the repo root)."""

import numpy as np
from PIL import Image, ImageDraw

from cxrres.synthetic import Anatomy, ImageSpec, render, to_uint8

CASES = [(), ("Nodule",), ("Cardiomegaly", "Effusion"), ("Pneumothorax",), ("Mass", "Atelectasis"), ("Pneumonia",),
         ("Infiltration", "Edema"), ("Emphysema", "Fibrosis", "Hernia")]
TILE = 320
sheet = Image.new("RGB", (TILE * 4, TILE * 2))
for i, findings in enumerate(CASES):
    spec = ImageSpec("x.png", i, 0, findings, 7000 + i, Anatomy.sample(np.random.default_rng([11, i])))
    image, boxes = render(spec, 1024)
    tile = Image.fromarray(to_uint8(image)).convert("RGB")
    draw = ImageDraw.Draw(tile)
    for label, (x, y, w, h) in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(60, 255, 60), width=5)
    tile = tile.resize((TILE, TILE), Image.Resampling.BOX)
    ImageDraw.Draw(tile).text((6, 4), ", ".join(findings) or "No Finding", fill=(255, 230, 0))
    sheet.paste(tile, ((i % 4) * TILE, (i // 4) * TILE))
sheet.save("docs/images/phantom.png", optimize=True)
