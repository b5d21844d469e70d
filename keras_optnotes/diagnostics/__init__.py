"""Instruments for the loss landscape: Hessian-vector products, curvature, sharpness,
noise scale. Operators, algorithms and results are kept apart."""
