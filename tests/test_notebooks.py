"""The tutorial notebooks' form, read without running them: each `NN_topic.py`
(jupytext percent) is paired with an `.ipynb` holding the same cells, opens with
prose, sets its parameters in one cell tagged `parameters`, imports only public names
of the package, and ends by writing its numbers and its run time.

Running them is the business of tests/test_tutorials*.py (papermill, QUICK = True).
"""

import ast
import json

import pytest
from notebooks import NAMES, TUTORIALS, read

PARAMETERS = {"QUICK": False, "SEEDS": None, "OUT": "optnotes-report/tutorials"}


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_tutorial_is_a_notebook():
    assert len(NAMES) == 9
    assert not (TUTORIALS / "_common.py").exists()
    for name in NAMES:
        assert (TUTORIALS / f"{name}.ipynb").is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_the_ipynb_holds_the_cells_of_the_py(name):
    source = read(name)
    stored = json.loads((TUTORIALS / f"{name}.ipynb").read_text(encoding="utf-8"))
    cells = [
        cell
        for cell in stored["cells"]
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", ())
    ]
    assert [c["cell_type"] for c in cells] == [c.cell_type for c in source.cells]
    for paired, cell in zip(cells, source.cells):
        text = paired["source"]
        text = "".join(text) if isinstance(text, list) else text
        assert text == cell.source, f"{name}: a cell of the .ipynb differs from the .py"
    assert stored["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_prose_then_the_parameters_cell(name):
    notebook = read(name)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {name[:2]} — ")
    assert "QUICK = True" in first.source
    parameters = code_cells(notebook)[0]
    assert parameters.metadata.get("tags") == ["parameters"]
    assigned = {}
    for node in ast.parse(parameters.source).body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell only assigns"
        (target,) = node.targets
        assigned[target.id] = ast.literal_eval(node.value)
    assert assigned == PARAMETERS
    # papermill injects after the one cell tagged "parameters"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", ())]
    assert len(tagged) == 1


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", [alias.name for alias in node.names]


@pytest.mark.parametrize("name", NAMES)
def test_only_public_names_of_the_package(name):
    notebook = read(name)
    for cell in code_cells(notebook):
        tree = ast.parse(cell.source)
        for module, names in imported_modules(tree):
            assert module != "_common" and "sys" not in module.split(".")
            if module.split(".")[0] == "keras_optnotes":
                private = [p for p in module.split(".") + names if p.startswith("_")]
                assert not private, f"{name} imports {module} {names}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys")
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "SPEC" not in text and "_common" not in text and "--quick" not in text


@pytest.mark.parametrize("name", NAMES)
def test_ends_with_its_numbers_and_its_run_time(name):
    last = code_cells(read(name))[-1].source
    assert f'out / "{name}.json"' in last and "write_json(" in last
    assert "run_description(" in last
