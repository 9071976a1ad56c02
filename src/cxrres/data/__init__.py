"""ChestX-ray14 data layer: metadata readers, layouts, splits, resolution caches and Datasets."""

from cxrres.data.labels import BOX_CLASSES, CHEXNET_ORDER, CLASSES
from cxrres.data.layout import DataRoot, find_images
from cxrres.data.metadata import read_bbox_list, read_data_entry, read_image_list, read_split_file
from cxrres.data.splits import PARTS, Split, boxes_in_part, build_split, check_split

__all__ = [
    "BOX_CLASSES",
    "CHEXNET_ORDER",
    "CLASSES",
    "DataRoot",
    "PARTS",
    "Split",
    "boxes_in_part",
    "build_split",
    "check_split",
    "find_images",
    "read_bbox_list",
    "read_data_entry",
    "read_image_list",
    "read_split_file",
]
