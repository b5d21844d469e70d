"""Instruments for the loss landscape: Hessian-vector products, curvature, sharpness,
noise scale. Operators, algorithms and results are kept apart.

- `operators`: `HessianOperator` (the loss, its gradient and H v as functions of the
  flat weights) and `hessian_vector_product`.
- `algorithms`: power iteration with deflation, Hutchinson's trace, and their model
  front-ends `hessian_top_eigenvalues` and `hessian_trace`.
- `results`: the frozen dataclasses every function returns.
- `sharpness`: Keskar's ε-sharpness; `landscape`: directions, lines and surfaces;
  `lr_range`: Smith's range test; `plots`: matplotlib figures (the `plot` extra),
  returned as `Figure`s, drawn into a given `ax=`, saved only when given a path.

Every function measures with `training=False` unless told otherwise and restores the
model's weights exactly. The long-running ones (`hessian_top_eigenvalues`,
`hessian_trace`, `keskar_sharpness`, `loss_surface`, `lr_range_test`) show a
`keras.utils.Progbar` as `fit` does; pass `verbose=0` for silence.
"""

from keras_optnotes.diagnostics.algorithms import (
    hessian_top_eigenvalues,
    hessian_trace,
    hutchinson,
    power_iteration,
)
from keras_optnotes.diagnostics.landscape import (
    loss_along_line,
    loss_surface,
    random_direction,
)
from keras_optnotes.diagnostics.lr_range import lr_range_test
from keras_optnotes.diagnostics.operators import (
    HessianOperator,
    hessian_vector_product,
    preserved_weights,
)
from keras_optnotes.diagnostics.plots import (
    plot_loss_lines,
    plot_loss_surface,
    plot_lr_range,
)
from keras_optnotes.diagnostics.results import (
    HessianEigenvalues,
    HessianTrace,
    KeskarSharpness,
    LearningRateRange,
    LossLine,
    LossSurface,
)
from keras_optnotes.diagnostics.sharpness import keskar_sharpness

__all__ = [
    "HessianEigenvalues",
    "HessianOperator",
    "HessianTrace",
    "KeskarSharpness",
    "LearningRateRange",
    "LossLine",
    "LossSurface",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "hessian_vector_product",
    "hutchinson",
    "keskar_sharpness",
    "loss_along_line",
    "loss_surface",
    "lr_range_test",
    "plot_loss_lines",
    "plot_loss_surface",
    "plot_lr_range",
    "power_iteration",
    "preserved_weights",
    "random_direction",
]
