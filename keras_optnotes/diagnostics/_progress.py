"""The progress bar of the long-running diagnostics, shown the way `Model.fit` shows
its own: `keras.utils.Progbar`, with `verbose` = "auto" (1), 0, 1 or 2."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import keras

VERBOSE_VALUES = ("auto", 0, 1, 2)


def check_verbose(verbose: int | str) -> int:
    """`verbose` as Keras' `fit` reads it: "auto" is 1 (a progress bar), 0 silent,
    1 a progress bar, 2 one line when done."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, Integral) and int(verbose) in (0, 1, 2):
        return int(verbose)
    raise ValueError(
        f"`verbose` must be one of {', '.join(repr(v) for v in VERBOSE_VALUES)}. "
        f"Received: verbose={verbose!r}"
    )


def progress_bar(
    target: int | None,
    verbose: int,
    unit_name: str,
    stateful: Sequence[str] = (),
) -> keras.utils.Progbar:
    """A `keras.utils.Progbar` over `target` units; it prints nothing at verbose 0.
    The values named in `stateful` are shown as given, not averaged over steps."""
    return keras.utils.Progbar(
        target, verbose=verbose, stateful_metrics=list(stateful), unit_name=unit_name
    )


def announce(message: str, verbose: int) -> None:
    """Print a heading above a progress bar ("Eigenvalue 2/3"), as `fit` prints
    "Epoch 2/3"; nothing at verbose 0."""
    if verbose:
        print(message, flush=True)
