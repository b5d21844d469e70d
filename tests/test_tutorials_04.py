"""Tutorial 04 (sharp and flat minima): the quick run under papermill, the committed
full run, and the notebook's wording, checked independently.

The quick run happens once per module, in a Jupyter kernel, into a temporary folder.
Every interval a table shows is recomputed here from the per-seed values in the JSON
with `scipy.stats.t` (not with the protocol's own t-quantile), for the quick run and
for the committed full run (`tutorials/04_sharp_and_flat_minima.ipynb` and
`tutorials/figures/04_sharp_and_flat_minima.json`); the choice of each setting is
recomputed from the validation scores; the surfaces and Keskar's line must pass
through the losses the study measured a different way; the intervals the closing
prose quotes must be the committed run's; and the verdicts are checked on hand-built
intervals with known answers.
"""

import json
import math
import re
import types

import nbformat
import numpy as np
import pytest
from notebooks import TUTORIALS, Executed, definitions, execute, read, tensorflow_only
from scipy import stats

from keras_optnotes.diagnostics.results import LossSurface
from keras_optnotes.experiments.protocol import Interval

pytestmark = [pytest.mark.slow, tensorflow_only]

NAME = "04_sharp_and_flat_minima"
FIGURES = (
    "04_sharp_and_flat_minima.png",
    "04_interpolation.png",
    "04_surfaces.png",
    "04_remedies.png",
)
COMMITTED = TUTORIALS / "figures"
BUDGETS = ("equal_steps", "equal_epochs")
TABLES = {"equal_steps": "**Table 1a:", "equal_epochs": "**Table 1b:"}
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
# "m [lo, hi]" or "m % [lo, hi]", signs and Unicode minus signs allowed.
_SIGNED = r"[-+−]?\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"({_SIGNED})(?: %)? \[({_SIGNED}), ({_SIGNED})\]")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return execute(NAME, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def notebook():
    """The notebook's functions and constants, as attributes."""
    return types.SimpleNamespace(**definitions(NAME))


@pytest.fixture(scope="module")
def committed() -> Executed:
    """The committed full run: the executed .ipynb and the JSON it wrote."""
    stored = nbformat.read(TUTORIALS / f"{NAME}.ipynb", as_version=4)
    results = json.loads((COMMITTED / f"{NAME}.json").read_text(encoding="utf-8"))
    return Executed(NAME, stored, COMMITTED, results)


def t_interval(values) -> tuple[float, float, float]:
    """Mean and two-sided 95 % Student-t interval, with scipy."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    mean = float(values.mean())
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1)
    half /= math.sqrt(values.size)
    return mean, mean - half, mean + half


def table_after(summary: str, marker: str) -> dict[str, list[str]]:
    """The Markdown table that follows `marker`: {first cell: the row's cells}."""
    lines = summary[summary.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def assert_cell(cell: str, values, scale: float, digits: int) -> None:
    """`cell` reads "m [lo, hi]" (to `digits` decimals) of `values` × `scale`."""
    shown = [float(x) for x in NUMBER.findall(cell)[:3]]
    expected = np.array(t_interval(values)) * scale
    np.testing.assert_allclose(shown, expected, rtol=0, atol=0.5 * 10**-digits + 1e-9)


def assert_tables_match_the_per_seed_values(summary: str, studies: dict, labels):
    """Every run's test accuracy and its paired difference from large, in both tables
    and in the remedies' table, against scipy on the JSON's per-seed values."""
    for budget in BUDGETS:
        runs = studies[budget]["runs"]
        rows = table_after(summary, TABLES[budget])
        assert set(rows) == {labels[name] for name in runs}
        large = np.array(runs["large"]["per_seed"]["test_accuracy"], dtype=float)
        for name, run in runs.items():
            row = rows[labels[name]]
            accuracy = np.array(run["per_seed"]["test_accuracy"], dtype=float)
            assert_cell(row[4], accuracy, 100.0, 2)
            assert_cell(row[9], run["per_seed"]["lambda_max"], 1.0, 1)  # λ_max
            if name == "large":
                assert row[5] == "baseline"
                continue
            assert_cell(row[5], accuracy - large, 100.0, 2)
            _, low, high = t_interval(accuracy - large)
            significant = low > 0 or high < 0
            assert row[5].endswith(
                "significant at 95 %" if significant else "(the interval contains 0)"
            )
    remedies = [
        n for n in studies["equal_steps"]["runs"] if n not in ("small", "large")
    ]
    assert remedies
    rows = table_after(summary, "| remedy |")
    runs = studies["equal_steps"]["runs"]
    for name in remedies:
        row = rows[labels[name]]
        for cell, metric, scale, digits in (
            (row[3], "test_accuracy", 100.0, 2),
            (row[4], "lambda_max", 1.0, 1),
            (row[5], "keskar_sharpness", 1.0, 2),
        ):
            difference = np.subtract(
                np.array(runs[name]["per_seed"][metric], dtype=float),
                np.array(runs["large"]["per_seed"][metric], dtype=float),
            )
            assert_cell(cell, difference, scale, digits)


def assert_protocol(studies: dict) -> None:
    """Fresh report seeds, the budgets as named, and each setting the best mean
    validation score of its grid."""
    assert set(studies) == set(BUDGETS)
    for budget, result in studies.items():
        settings = result["protocol"]
        assert not set(settings["seeds"]) & set(settings["tuning_seeds"])
        steps = settings["budget"]["steps"]
        epochs = settings["budget"]["epochs"]
        if budget == "equal_steps":
            assert settings["budget"]["kind"] == "steps"
            assert len(set(steps.values())) == 1
        else:
            assert settings["budget"]["kind"] == "epochs"
            assert len(set(epochs.values())) == 1
            assert steps["small"] > steps["large"]
        for run in result["runs"].values():
            search = run["search"]
            scores = np.array(search["validation_scores"], dtype=np.float64)
            means = np.mean(scores, axis=1)  # a diverged run (None, NaN) never wins
            chosen = search["candidates"][
                int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))
            ]
            assert search["chosen"] == chosen
            assert run["config"]["learning_rate"] == chosen["learning_rate"]
            assert run["per_seed"]["test_accuracy"] and len(
                run["per_seed"]["test_accuracy"]
            ) == len(settings["seeds"])
        if "sam" in result["runs"]:  # m-sharpness: slices of at most 32 samples
            config = result["runs"]["sam"]["config"]
            assert config["slice_size"] <= 32
            assert (
                config["slice_size"] * config["num_batch_splits"]
                >= (config["batch_size"])
            )


def assert_lines_and_surfaces_pass_through_the_measured_losses(results: dict):
    """Keskar's line at α = 0 and 1, and each surface's centre, are the losses the
    study measured on report seed 0 by another forward pass; the rise at radius 0.5
    is the surface's, recomputed here."""
    studies = results["studies"]
    for budget in BUDGETS:
        runs = studies[budget]["runs"]
        line = studies[budget]["interpolation"]
        assert line["seed"] == studies[budget]["protocol"]["seeds"][0]
        alphas = np.asarray(line["alpha"], dtype=np.float64)
        np.testing.assert_allclose(alphas, -1.0 + 0.1 * np.arange(31), atol=1e-12)
        zero, one = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1)))
        for index, name in ((zero, "small"), (one, "large")):
            measured = runs[name]["per_seed"]
            # loss_along_line's own forward pass against classification_scores.
            assert line["train_loss"][index] == pytest.approx(
                measured["train_loss"][0], rel=1e-5
            )
            assert line["test_loss"][index] == pytest.approx(
                measured["test_loss"][0], rel=1e-5
            )
    # The surfaces' models are trained again from the chosen settings: their centre
    # is the loss the equal-epochs study measured on report seed 0.
    runs = studies["equal_epochs"]["runs"]
    assert set(results["surfaces"]) == {"small", "large"}
    for name, surface in results["surfaces"].items():
        alphas = np.asarray(surface["alphas"], dtype=np.float64)
        betas = np.asarray(surface["betas"], dtype=np.float64)
        losses = np.asarray(surface["losses"], dtype=np.float64)
        i, j = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(betas)))
        assert alphas[i] == 0.0 and betas[j] == 0.0
        assert losses.shape == (alphas.size, betas.size)
        assert losses[i, j] == pytest.approx(
            runs[name]["per_seed"]["train_loss"][0], rel=1e-4
        )
        a, b = np.meshgrid(alphas, betas, indexing="ij")
        ring = np.abs(np.hypot(a, b) - 0.5) <= (alphas[1] - alphas[0]) / 2 + 1e-12
        assert results["rises"][name] == pytest.approx(
            losses[ring].mean() - losses[i, j], rel=1e-9, abs=1e-12
        )


# The quick run ---------------------------------------------------------------------


def test_writes_and_shows_its_figures(executed):
    executed.assert_shows(FIGURES, min_bytes=10_000)


def test_shows_both_tables_and_writes_both_studies(executed, notebook):
    shown = "\n".join(executed.markdown_outputs())
    # Each table names its budget.
    assert "**Table 1a: equal steps (12 per method)**" in shown
    assert "**Table 1b: equal epochs (4 per method)**" in shown
    assert (
        "**Keskar et al.'s claim (a sharper minimum that generalizes worse) " in shown
    )
    assert "| remedy |" in shown and "| budget | run | seed |" in shown
    results = executed.results
    assert set(results) == {"studies", "surfaces", "rises", "seeds"}
    assert results["seeds"] == 2
    studies = results["studies"]
    assert set(studies) == set(BUDGETS)
    assert set(studies["equal_steps"]["runs"]) == set(notebook.SETTINGS[True]["runs"])
    assert set(studies["equal_epochs"]["runs"]) == {"small", "large"}
    for study in studies.values():
        assert study["protocol"]["seeds"] == [0, 1]


def test_quick_tables_are_t_intervals_of_the_per_seed_values(executed, notebook):
    shown = "\n".join(executed.markdown_outputs())
    studies = executed.results["studies"]
    assert_tables_match_the_per_seed_values(shown, studies, notebook.LABELS)
    assert_protocol(studies)
    # The per-seed table holds the JSON's values (six significant digits).
    rows = shown[shown.index("| budget | run | seed |") :].splitlines()
    small = [r for r in rows if r.startswith("| equal epochs | small batch | 1 |")]
    value = float(small[0].split("|")[4])
    measured = studies["equal_epochs"]["runs"]["small"]["per_seed"]["test_accuracy"]
    assert value == pytest.approx(measured[1], rel=1e-5)


def test_surfaces_and_line_pass_through_the_measured_losses(executed):
    results = executed.results
    for surface in results["surfaces"].values():
        assert np.asarray(surface["losses"]).shape == (5, 5)
    assert_lines_and_surfaces_pass_through_the_measured_losses(results)


# The committed full run --------------------------------------------------------------


def test_committed_run_is_on_the_protocol_and_its_tables_hold(committed, notebook):
    shown = "\n".join(committed.markdown_outputs())
    results = committed.results
    studies = results["studies"]
    assert_tables_match_the_per_seed_values(shown, studies, notebook.LABELS)
    assert_protocol(studies)
    assert_lines_and_surfaces_pass_through_the_measured_losses(results)
    settings = notebook.SETTINGS[False]
    assert results["seeds"] == 8
    for budget, result in studies.items():
        assert result["protocol"]["seeds"] == list(range(8))
        assert result["protocol"]["budget"]["amount"] == settings[budget]
    runs = studies["equal_steps"]["runs"]
    assert set(runs) == set(settings["runs"])
    lars = runs["lars"]["config"]
    assert lars["optimizer"] == "LARS" and lars["trust_coefficient"] == 0.001
    assert lars["weight_decay"] > 0 and lars["warmup_epochs"] > 0
    assert all(0.29 < lr < 31 for lr in runs["lars"]["learning_rate_grid"])
    for surface in results["surfaces"].values():
        assert np.asarray(surface["losses"]).shape == (17, 17)
    # The notebook holds the full run: its figures inline, no injected parameters,
    # and its wall-clock and CPU time.
    assert committed.inline_images() >= len(FIGURES)
    assert not any(
        "injected-parameters" in cell.metadata.get("tags", ())
        for cell in committed.notebook.cells
    )
    assert re.search(r"Run in \d+ s \(\d+ s of CPU time\)", committed.printed())
    assert not [
        output
        for output in committed.outputs()
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


def test_the_answer_quotes_the_committed_run(committed):
    """Every interval "m [lo, hi]" of the closing prose is one the committed run
    showed, to the prose's decimals; so are the surfaces' rises."""
    (answer,) = [
        cell.source
        for cell in read(NAME).cells
        if cell.cell_type == "markdown" and cell.source.startswith("## The answer")
    ]
    shown = [
        [float(x) for x in match]
        for match in INTERVAL.findall("\n".join(committed.markdown_outputs()))
    ]
    quoted = INTERVAL.findall(answer.replace("−", "-"))
    assert len(quoted) >= 10
    for match in quoted:
        digits = max(len(x.partition(".")[2]) for x in match)
        numbers = np.array([float(x) for x in match])
        tolerance = 0.5 * 10**-digits + 1e-9
        assert any(
            np.all(np.abs(np.array(candidate) - numbers) <= tolerance)
            for candidate in shown
        ), f"the answer quotes {match}, which the committed run did not show"
    rises = re.search(
        r"rises\s+(\d+\.\d)\s+at\s+radius\s+0\.5\s+around\s+the\s+large\s+solution"
        r"\s+against\s+(\d+\.\d)\s+around\s+the\s+small\s+one",
        answer,
    )
    assert rises, "the answer quotes the surfaces' rises"
    assert float(rises[1]) == round(committed.results["rises"]["large"], 1)
    assert float(rises[2]) == round(committed.results["rises"]["small"], 1)


# The wording and the arithmetic, on hand-built values ------------------------------


def _interval(mean, low, high, count=8):
    return Interval(mean, low, high, (high - low) / 4, count)


class _Study:
    """What the verdicts read of a study: `difference` and `interval`."""

    def __init__(self, differences, accuracy=0.9):
        self.differences = differences
        self.accuracy = accuracy

    def difference(self, name, metric, baseline="large"):
        return self.differences[metric]

    def interval(self, name, metric):
        return None if self.accuracy is None else _interval(self.accuracy, 0, 1)


def test_paired_verdict_says_significant_only_where_the_interval_excludes_zero(
    notebook,
):
    assert notebook.paired_verdict(_interval(0.012, 0.002, 0.022), 100.0) == (
        "+1.20 [+0.20, +2.20], significant at 95 %"
    )
    assert notebook.paired_verdict(_interval(-0.01, -0.03, 0.01), 100.0) == (
        "-1.00 [-3.00, +1.00], not significant (the interval contains 0)"
    )
    one = Interval(0.5, math.nan, math.nan, math.nan, 1)
    assert "one seed: no interval, no verdict" in notebook.paired_verdict(one)
    assert notebook.paired_verdict(None).startswith("n/a")


def test_keskar_verdict_and_reproduction(notebook):
    up, down, zero = (
        _interval(5.0, 1.0, 9.0),
        _interval(-0.02, -0.03, -0.01),
        _interval(0.1, -1.0, 1.2),
    )
    both = _Study(
        {
            "lambda_max": up,
            "hessian_trace": up,
            "keskar_sharpness": zero,
            "test_accuracy": down,
        }
    )
    assert notebook.keskar_verdict(both) == (
        "The large batch's minimum is sharper by λ_max and the Hessian trace "
        "(significant at 95 %) only; its test accuracy is lower, significant at 95 %."
    )
    assert notebook.reproduces(both)
    flat = _Study(
        {
            "lambda_max": zero,
            "hessian_trace": down,
            "keskar_sharpness": zero,
            "test_accuracy": zero,
        }
    )
    assert notebook.keskar_verdict(flat) == (
        "The large batch's minimum is sharper by none of the three measures at "
        "95 %, flatter by the Hessian trace (significant at 95 %); its test "
        "accuracy is not significantly different at 95 %."
    )
    assert not notebook.reproduces(flat)
    # Sharper but not worse: not a reproduction.
    assert not notebook.reproduces(_Study({"lambda_max": up, "test_accuracy": zero}))


def test_a_run_below_half_accuracy_is_failed_and_not_drawn(notebook):
    assert notebook.failed(_Study({}, accuracy=0.3), "lars")
    assert notebook.failed(_Study({}, accuracy=None), "lars")
    assert not notebook.failed(_Study({}, accuracy=0.97), "lars")
    from matplotlib.figure import Figure

    axes = Figure().add_subplot()
    values = np.array([0.95, 0.97, 0.96, 0.99])
    notebook.interval_rows(
        axes,
        [("ran", values, "C0", ""), ("diverged", None, "C1", "did not train")],
        scale=100.0,
    )
    (bars,) = axes.containers
    (segment,) = bars.lines[2][0].get_segments()
    mean, low, high = t_interval(100 * values)
    np.testing.assert_allclose(segment[:, 0], [low, high], atol=1e-9)
    assert bars.lines[0].get_xdata()[0] == pytest.approx(mean, abs=1e-12)
    assert [t.get_text() for t in axes.texts] == ["did not train"]
    # Nothing at the failed row: the axis spans the trained run only.
    assert axes.dataLim.x0 >= 90.0 and axes.dataLim.x1 <= 100.0


def test_ring_rise_on_a_paraboloid(notebook):
    grid = np.linspace(-1.0, 1.0, 17)  # the full run's grid, step 0.125
    a, b = np.meshgrid(grid, grid, indexing="ij")
    surface = LossSurface(alphas=grid, betas=grid, losses=3.0 + a**2 + b**2)
    r = np.hypot(a, b)
    ring = np.abs(r - 0.5) <= 0.0625
    # The mean of r² over the grid points within half a step of the circle.
    expected = float(np.mean(r[ring] ** 2))
    assert notebook.ring_rise(surface) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.3  # near 0.5² = 0.25
