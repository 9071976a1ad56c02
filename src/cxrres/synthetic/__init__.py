"""The phantom: a synthetic ChestX-ray14 where resolution matters, in the NIH layout or any other (docs/phantom.md).

Anatomy is drawn in patient coordinates (u, v) in [0, 1] (u to the image's right, v down), mapped to the image by
a per-patient scale, shift and small rotation. Intensities are in [0, 1] (1 = white = dense) before exposure,
noise and quantisation to 8 bits. Every lesion is drawn from a smooth support mask; its box is the pixel extent
of that mask (> 0.5) in the image frame of `size_px` pixels (the 1024-px frame at the default size).

The package: `anatomy` (body), `lesions` (one drawer per finding), `images` (one image), `lateral` (a lateral view),
`dataset` (the plan and the data set in the NIH layout), `layouts` (the other layouts: `LAYOUTS`, `synthesize_layout`;
`writing` what they share, `rsna_layout` the DICOM one), `contrast` (the mechanism, measured).
"""

from cxrres.synthetic.anatomy import Anatomy
from cxrres.synthetic.contrast import lesion_cnr, measure_cnr
from cxrres.synthetic.nih_layout import FINDING_WEIGHTS, finding_weights, plan, synthesize
from cxrres.synthetic.images import ImageSpec, render, to_uint8
from cxrres.synthetic.layouts import LAYOUTS, synthesize_layout

__all__ = [
    "Anatomy",
    "FINDING_WEIGHTS",
    "ImageSpec",
    "LAYOUTS",
    "finding_weights",
    "lesion_cnr",
    "measure_cnr",
    "plan",
    "render",
    "synthesize",
    "synthesize_layout",
    "to_uint8",
]
