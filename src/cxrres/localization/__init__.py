"""Where a network looks: CAMs, boxes, IoU, matching, localization of a run, overlays."""
