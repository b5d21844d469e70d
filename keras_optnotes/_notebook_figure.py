"""A matplotlib `Figure` that a notebook shows inline without pyplot.

The package draws on figures it makes itself, never through `pyplot`, so that no
global state is touched. Jupyter shows a plain `Figure` only once pyplot's inline
backend has registered a formatter for it; this subclass also answers IPython's
`_repr_png_`, so a figure returned by a function displays inline either way (with
the inline backend active, IPython uses its formatter and not this method). Imported
only when a figure is made: matplotlib is an extra.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class NotebookFigure(Figure):
    """A `matplotlib.figure.Figure` with a PNG representation for IPython."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()
