"""The one way the package imports TensorFlow, which is an optional dependency.

TensorFlow is installed with `pip install "keras-optnotes[tensorflow]"`; on the JAX and
PyTorch backends nothing in the package needs it except the functions made for
TensorFlow's own objects (`keras_optnotes.data.augment` on a `tf.data.Dataset`). They
import it through `import_tensorflow(what)`, which, when TensorFlow is not installed,
raises `TensorFlowNotInstalledError`: one line naming what needs it and the install
line, at the call (never at `import keras_optnotes`); the console script prints that
line and exits with status 2.

On the PyTorch backend the import has an order to keep: importing `triton` (which
Keras' PyTorch backend and `torch.compile` import) after TensorFlow crashes the
interpreter with a segmentation fault (TensorFlow 2.21 with the triton of PyTorch
2.14's wheels), while triton first and TensorFlow second works. So Keras, and with it
the backend, is imported first.
"""

from __future__ import annotations

INSTALL = 'pip install "keras-optnotes[tensorflow]"'


class TensorFlowNotInstalledError(ModuleNotFoundError):
    """Something that needs TensorFlow was called where TensorFlow is not installed.

    A `ModuleNotFoundError` (so an `ImportError`) whose message is one line:
    "<what> needs TensorFlow: pip install "keras-optnotes[tensorflow]"".
    """

    def __init__(self, what: str):
        super().__init__(f"{what} needs TensorFlow: {INSTALL}", name="tensorflow")
        self.what = what


def import_tensorflow(what: str):
    """`import tensorflow`, after Keras and its backend.

    Args:
        what: what needs TensorFlow, for the error message (for example
            "keras_optnotes.data.augment (a tf.data pipeline)").

    Returns:
        The `tensorflow` module.

    Raises:
        TensorFlowNotInstalledError: TensorFlow is not installed.
    """
    import keras  # noqa: F401  (on PyTorch: torch and triton, before TensorFlow)

    try:
        import tensorflow
    except ModuleNotFoundError as error:
        # Only TensorFlow itself missing; a dependency of an installed TensorFlow that
        # is missing is a broken install, reported as it is.
        if error.name == "tensorflow":
            raise TensorFlowNotInstalledError(what) from None
        raise
    return tensorflow


def missing_tensorflow_message(error: BaseException) -> str | None:
    """The one line to print for `error` if it says TensorFlow is not installed.

    Either a `TensorFlowNotInstalledError` (its own message), or the
    `ModuleNotFoundError` that `import keras` raises when Keras' backend is
    TensorFlow (its default) and TensorFlow is not installed. None for any other
    error.
    """
    if isinstance(error, TensorFlowNotInstalledError):
        return str(error)
    if (
        isinstance(error, ModuleNotFoundError)
        and (error.name or "").split(".")[0] == "tensorflow"
    ):
        return (
            "Keras' backend 'tensorflow' (its default; KERAS_BACKEND or "
            f"~/.keras/keras.json chooses) needs TensorFlow: {INSTALL}, or choose "
            "another backend, e.g. KERAS_BACKEND=jax"
        )
    return None
