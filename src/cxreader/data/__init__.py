"""Datasets and image reading: NIH ChestX-ray14, OpenI/IU reports, caches, splits and transforms."""
