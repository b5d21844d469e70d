"""Layers that Keras lacks (noise on weights) and a factory for the normalization variants."""
