"""Datasets and image reading: NIH ChestX-ray14, OpenI/IU reports, synthetic data, caches."""
