"""Callbacks that add entries to `fit`'s logs run before the callbacks that read them.

Keras' `CallbackList` calls its callbacks in list order at every hook, all with one
`logs` dict: a callback listed *after* `TensorBoard`, `CSVLogger`, `ModelCheckpoint`
or `EarlyStopping` adds its values too late for them. `LogProducer` removes the
trap: when `fit` (or `evaluate`) builds its `CallbackList` it calls `set_model` on
each callback in turn, and a `LogProducer` then moves itself in that list to just
before the first callback that is not a `LogProducer` (the producers keep their
relative order; `History` and the progress bar, which Keras appends, stay after
them). The user's own list is not touched: `CallbackList` holds a copy.

Moving an element from index i to an index j ≤ i while `CallbackList.set_model`
iterates over the list leaves the iteration's next element unchanged, so every
callback is still set up exactly once. Where Keras' `CallbackList` cannot be found
(a future Keras that builds it differently), a warning says so, once per class, and
asks the user to list the callback first.
"""

from __future__ import annotations

import sys
import warnings

import keras

_WARNED: set[str] = set()
_FRAMES_SEARCHED = 6


def _calling_callback_list(callback):
    """The `CallbackList` whose `set_model` loop is setting up `callback`, or `None`
    (and whether any `CallbackList` was found on the stack at all)."""
    frame = sys._getframe(2)
    seen_list = False
    for _ in range(_FRAMES_SEARCHED):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            seen_list = True
            if (
                frame.f_code.co_name == "set_model"
                and frame.f_locals.get("callback") is callback
                and isinstance(getattr(owner, "callbacks", None), list)
            ):
                return owner, True
        frame = frame.f_back
    return None, seen_list


def run_before_log_readers(callback) -> None:
    """Move `callback` before the first non-producer of the `CallbackList` that is
    setting it up (see the module docstring); warn once if there is none to find."""
    owner, seen_list = _calling_callback_list(callback)
    if owner is None:
        name = type(callback).__name__
        if seen_list and name not in _WARNED:
            _WARNED.add(name)
            warnings.warn(
                f"{name} could not move itself before the callbacks that read the "
                "logs (TensorBoard, CSVLogger, ModelCheckpoint, EarlyStopping): list "
                "it before them, or they will not see its values.",
                stacklevel=3,
            )
        return
    callbacks = owner.callbacks
    index = next(i for i, c in enumerate(callbacks) if c is callback)
    target = next(
        (i for i, c in enumerate(callbacks[:index]) if not isinstance(c, LogProducer)),
        None,
    )
    if target is not None:
        callbacks.insert(target, callbacks.pop(index))


class LogProducer(keras.callbacks.Callback):
    """Base of the callbacks that write entries into `fit`'s logs.

    In `fit` they run before every other callback, whatever their place in the
    `callbacks=` list, so that `TensorBoard`, `CSVLogger`, `ModelCheckpoint`,
    `EarlyStopping` or `ReduceLROnPlateau` see (and may monitor) their values.
    """

    def set_model(self, model):
        super().set_model(model)
        run_before_log_readers(self)
