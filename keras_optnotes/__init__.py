"""keras-optnotes: the lecture notes on deep-learning optimization, as Keras 3 components.

Subpackages:

- `keras_optnotes.optimizers`: the notes' update rules as `keras.optimizers.Optimizer`
  subclasses with XLA-fused steps.
- `keras_optnotes.regularizers`, `keras_optnotes.layers`, `keras_optnotes.callbacks`:
  the notes' regularization techniques that Keras lacks.
- `keras_optnotes.diagnostics`: sharpness, curvature and noise-scale instruments.
- `keras_optnotes.data`: datasets that need no network.
"""

__version__ = "0.1.0"
