"""Running the tutorial notebooks from the tests.

A tutorial is a jupytext "percent" file, `tutorials/NN_topic.py`, paired with
`tutorials/NN_topic.ipynb`. Its first code cell is tagged `parameters` and sets
`QUICK`, `SEEDS` and `OUT`; its last cell writes the measured numbers to
`OUT/NN_topic.json`.

- `execute(name, out)` runs the notebook under papermill, in a Jupyter kernel of this
  Python, with `QUICK = True` and `OUT = out` injected after the parameters cell (as
  `papermill -p QUICK True` does), and returns the executed notebook with the JSON
  it wrote. The notebooks of one pytest process share one kernel (`shared_kernel`),
  its namespace and Keras' state cleared before each.
- `definitions(name)` is the notebook seen as a module: its imports, functions,
  classes and UPPER_CASE constants, executed here without running the experiment,
  for the tests of a notebook's own functions.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
import types
from pathlib import Path
from typing import Any

import keras
import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
# Every numbered tutorial on disk.
NAMES = sorted(path.stem for path in TUTORIALS.glob("[0-9][0-9]_*.py"))


# The mark of a test file whose notebooks need the TensorFlow backend (the stored runs
# and the tests use it).
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the tutorials' tests run on the TensorFlow backend",
)


@dataclasses.dataclass
class Executed:
    """A notebook run by papermill: the executed notebook, its output folder, and the
    numbers it wrote to `OUT/<name>.json`."""

    name: str
    notebook: Any
    out: Path
    results: Any

    def outputs(self) -> list[dict]:
        """Every output of every code cell, in order."""
        return [
            output
            for cell in self.notebook.cells
            if cell.cell_type == "code"
            for output in cell.get("outputs", ())
        ]

    def inline_images(self) -> int:
        """The number of PNG images the notebook displayed inline."""
        return sum("image/png" in output.get("data", {}) for output in self.outputs())

    def markdown_outputs(self) -> list[str]:
        """The Markdown the notebook displayed (tables, verdicts), in order."""
        return [
            "".join(output["data"]["text/markdown"])
            for output in self.outputs()
            if "text/markdown" in output.get("data", {})
        ]

    def assert_shows(self, figures, min_bytes: int = 5_000) -> None:
        """Each of `figures` was written to `out` as a PNG of at least `min_bytes`,
        at least as many images were shown inline, and the last cell printed the
        run's time and the package version (`experiments.run_description`)."""
        for figure in figures:
            data = (self.out / figure).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n", figure
            assert len(data) > min_bytes, (figure, len(data))
        assert self.inline_images() >= len(figures)
        printed = self.printed()
        assert "Run in " in printed and "s of CPU time" in printed
        assert "keras-optnotes " in printed

    def printed(self) -> str:
        """What the notebook printed (its stdout), joined."""
        return "".join(
            "".join(output.get("text", ""))
            for output in self.outputs()
            if output.get("output_type") == "stream" and output.get("name") == "stdout"
        )


def read(name: str):
    """The notebook `tutorials/<name>.py` as an nbformat notebook (via jupytext)."""
    import jupytext

    return jupytext.read(TUTORIALS / f"{name}.py")


_kernel = None  # the kernel manager of `shared_kernel`

# What runs in the shared kernel before each notebook: an empty namespace (a notebook
# that forgets an import fails as it would in a kernel of its own), Keras' global
# state (names, seeds, float type, precision policy) and matplotlib's figures back
# to their start.
RESET = """
%reset -f
import keras as _keras
import matplotlib.pyplot as _plt
_plt.close("all")
_keras.config.set_floatx("float32")
_keras.mixed_precision.set_global_policy("float32")
_keras.backend.clear_session()
%reset -f
"""


def shared_kernel():
    """One Jupyter kernel of this Python, started once per pytest process and shared
    by the notebooks it runs, reset before each (`RESET`).

    Each kernel of its own would start Python and import TensorFlow, Keras and
    matplotlib again: about 9 s of CPU time per notebook, a third of a quick run.
    """
    import atexit
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    global _kernel
    if _kernel is None:
        manager = AsyncKernelManager(kernel_name="python3")
        # The kernel inherits this process' environment (KERAS_BACKEND, ...); the
        # notebooks write only under their absolute OUT.
        run_sync(manager.start_kernel)(cwd=tempfile.gettempdir())
        atexit.register(run_sync(manager.shutdown_kernel), now=True)
        _kernel = manager
    client = _kernel.client()
    client.start_channels()
    try:
        run_sync(client.wait_for_ready)(timeout=120)
        reply = run_sync(client.execute_interactive)(
            RESET, store_history=False, timeout=120, output_hook=lambda message: None
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
    return _kernel


def execute(name: str, out: Path, **parameters: Any) -> Executed:
    """Runs `tutorials/<name>.ipynb` under papermill with `QUICK = True`, `OUT = out`
    and `parameters`; raises papermill's `PapermillExecutionError` (with the failing
    cell's traceback) if a cell fails."""
    import nbformat
    import papermill

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    executed_path = out / f"{name}.executed.ipynb"
    papermill.execute_notebook(
        str(TUTORIALS / f"{name}.ipynb"),
        str(executed_path),
        parameters={"QUICK": True, "OUT": str(out), **parameters},
        kernel_name="python3",
        progress_bar=False,
        km=shared_kernel(),
    )
    notebook = nbformat.read(executed_path, as_version=4)
    results_path = out / f"{name}.json"
    results = json.loads(results_path.read_text(encoding="utf-8"))
    return Executed(name, notebook, out, results)


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(
        node,
        (
            ast.Import,
            ast.ImportFrom,
            ast.FunctionDef,
            ast.ClassDef,
            ast.AsyncFunctionDef,
        ),
    ):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(
            isinstance(target, ast.Name) and target.id.isupper() for target in targets
        )
    return False


def definitions(name: str) -> dict[str, Any]:
    """The notebook's imports, functions, classes and UPPER_CASE constants, executed
    in a fresh namespace (the parameters cell included, so `QUICK` is False); nothing
    else of its code runs."""
    notebook = read(name)
    statements = [
        node
        for cell in notebook.cells
        if cell.cell_type == "code"
        for node in ast.parse(cell.source).body
        if _is_definition(node)
    ]
    tree = ast.Module(body=statements, type_ignores=[])
    # A module in sys.modules: dataclasses look their module up while defined.
    module = types.ModuleType(f"tutorial_{name}")
    sys.modules[module.__name__] = module
    exec(compile(tree, str(TUTORIALS / f"{name}.py"), "exec"), module.__dict__)
    return module.__dict__
