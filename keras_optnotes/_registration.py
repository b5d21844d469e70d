"""Registers the package's serializable classes with Keras as soon as Keras is there.

`import keras_optnotes` must be enough for `keras.saving.load_model` to find this
package's optimizers, layers, regularizers and callbacks, whose classes are registered
when their modules run. Importing those modules imports Keras, and so TensorFlow, which
takes seconds; the console script (`keras_optnotes.cli`, which runs the package's
`__init__` first) must parse its arguments before paying that. So:

- if `keras` is imported already, `register()` imports the registering subpackages at
  once;
- otherwise a one-shot finder on `sys.meta_path` waits for `keras` to be imported and
  registers right after the outermost import that brought it in (a `keras_optnotes`
  module that imports Keras is left to finish first, so no module sees another half
  made), then removes itself.

Only `importlib`'s public finder and loader protocol is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

# The subpackages whose modules register classes with Keras.
SUBPACKAGES = ("optimizers", "layers", "regularizers", "callbacks", "training")
_PACKAGE = __name__.rpartition(".")[0]
_lock = threading.RLock()
_state = threading.local()  # depth: imports of keras or keras_optnotes.* running here
_registered = False


def register() -> None:
    """Imports the registering subpackages (once; later calls return at once)."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
        _uninstall()
        for name in SUBPACKAGES:
            importlib.import_module(f"{_PACKAGE}.{name}")


def _watched(fullname: str) -> bool:
    return fullname == "keras" or fullname.startswith(_PACKAGE + ".")


class _Loader(importlib.abc.Loader):
    """The real loader, with a count of the watched imports running in this thread."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            self.loader.exec_module(module)
        finally:
            _state.depth -= 1
        if _state.depth == 0 and "keras" in sys.modules:
            register()

    def __getattr__(self, name):  # get_code, get_source, is_package, …
        return getattr(self.loader, name)


class _KerasImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if _registered or not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_finder = _KerasImportFinder()


def _uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def register_when_keras_is_imported() -> None:
    """`register()` now if Keras is imported, else right after Keras' import."""
    if "keras" in sys.modules:
        register()
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
