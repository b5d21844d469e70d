"""Datasets that need no network, and the batch-level augmentation recipe."""
