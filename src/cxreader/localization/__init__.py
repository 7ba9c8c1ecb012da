"""Where and what: CAM and Grad-CAM heatmaps, boxes, the IoBB evaluation and grounded descriptions."""
