"""keras-optnotes: the lecture notes on deep-learning optimization, as Keras 3 components.

Subpackages:

- `keras_optnotes.optimizers`: the notes' update rules as `keras.optimizers.Optimizer`
  subclasses with XLA-fused steps.
- `keras_optnotes.regularizers`, `keras_optnotes.layers`, `keras_optnotes.callbacks`:
  the notes' regularization techniques that Keras lacks.
- `keras_optnotes.diagnostics`: sharpness, curvature and noise-scale instruments.
- `keras_optnotes.data`: datasets that need no network.

`import keras_optnotes` registers every serializable class of the package with Keras
(so that `keras.saving.load_model` finds them) as soon as Keras is imported, before or
after this package; until then nothing heavy is imported, so that the console script
parses its arguments first (see `keras_optnotes/_registration.py`). The subpackages are
attributes of the package on first use.
"""

import importlib as _importlib
import importlib.metadata as _metadata

from keras_optnotes import _registration

try:  # The installed distribution's metadata: pyproject.toml's version, one source.
    __version__ = _metadata.version("keras-optnotes")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_SUBPACKAGES = (*_registration.SUBPACKAGES, "diagnostics", "data")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])


_registration.register_when_keras_is_imported()
