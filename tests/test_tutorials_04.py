"""Tutorial 04 (sharp and flat minima): the smoke run, the committed run, and the
tutorial's wording, checked independently.

The `--quick` run happens once per module, in-process, into a temporary folder. Every
interval a table shows is recomputed here from the per-seed values in the JSON with
`scipy.stats.t` (not with the protocol's own t-quantile), for the smoke run and for
the committed default run in `tutorials/figures/`; the choice of each setting is
recomputed from the validation scores; the surfaces and Keskar's line must pass
through the losses the study measured a different way; and the verdicts are checked
on hand-built intervals with known answers.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_tutorials import load, pytestmark  # noqa: F401

from keras_optnotes.diagnostics.results import LossSurface
from keras_optnotes.experiments.protocol import Interval

NAME = "04_sharp_and_flat_minima"
FIGURES = (
    "04_sharp_and_flat_minima.png",
    "04_interpolation.png",
    "04_surfaces.png",
    "04_remedies.png",
)
COMMITTED = Path(__file__).resolve().parent.parent / "tutorials" / "figures"
BUDGETS = ("equal_steps", "equal_epochs")
TABLES = {"equal_steps": "**Table 1a:", "equal_epochs": "**Table 1b:"}
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


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


def assert_tables_match_the_per_seed_values(summary: str, results: dict, labels):
    """Every run's test accuracy and its paired difference from large, in both tables
    and in the remedies' table, against scipy on the JSON's per-seed values."""
    for budget in BUDGETS:
        runs = results[budget]["runs"]
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
        n for n in results["equal_steps"]["runs"] if n not in ("small", "large")
    ]
    if remedies:
        rows = table_after(summary, "| remedy |")
        runs = results["equal_steps"]["runs"]
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


def assert_protocol(results: dict) -> None:
    """Fresh report seeds, the budgets as named, and each setting the best mean
    validation score of its grid."""
    for budget, result in results.items():
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


# The smoke run ---------------------------------------------------------------------


def test_writes_figures_summary_and_json(numbered):
    module, out, result, printed = numbered(NAME)
    summary = (out / f"{NAME}.md").read_text(encoding="utf-8")
    assert summary.startswith("# 04 — ")
    for heading in ("## 1. Small", "## 2. Between", "## 3. The remedies", "## Per "):
        assert heading in summary
    for figure in FIGURES:
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({figure})" in summary
    assert "Run in " in summary and "s of CPU time" in summary
    assert f"{out / NAME}.md" in printed
    assert "--quick" in module.__doc__ and '"Batch-size Matters"' in module.__doc__
    # Each table names its budget.
    assert "**Table 1a: equal steps (12 per method)**" in summary
    assert "**Table 1b: equal epochs (4 per method)**" in summary
    results = json.loads((out / f"{NAME}.json").read_text(encoding="utf-8"))
    assert set(results) == set(BUDGETS)
    assert set(results["equal_steps"]["runs"]) == set(module.SETTINGS[True]["runs"])
    assert set(results["equal_epochs"]["runs"]) == {"small", "large"}


def test_smoke_tables_are_t_intervals_of_the_per_seed_values(numbered):
    module, out, _, _ = numbered(NAME)
    summary = (out / f"{NAME}.md").read_text(encoding="utf-8")
    results = json.loads((out / f"{NAME}.json").read_text(encoding="utf-8"))
    assert_tables_match_the_per_seed_values(summary, results, module.LABELS)
    assert_protocol(results)
    # The per-seed table holds the JSON's values (six significant digits).
    rows = summary[summary.index("## Per seed") :].splitlines()
    small = [r for r in rows if r.startswith("| equal epochs | small batch | 1 |")]
    shown = float(small[0].split("|")[4])
    measured = results["equal_epochs"]["runs"]["small"]["per_seed"]["test_accuracy"]
    assert shown == pytest.approx(measured[1], rel=1e-5)


def test_surfaces_and_line_pass_through_the_measured_losses(numbered):
    result = numbered(NAME)[2]
    for budget in BUDGETS:
        study = result["studies"][budget]
        alphas = np.asarray(study.alphas)
        np.testing.assert_allclose(alphas, -1.0 + 0.1 * np.arange(31), atol=1e-12)
        zero, one = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1)))
        for index, name in ((zero, "small"), (one, "large")):
            measured = study.protocol.get(name).per_seed
            # loss_along_line's own forward pass against classification_scores.
            assert study.train_line[index] == pytest.approx(
                measured["train_loss"][0], rel=1e-5
            )
            assert study.test_line[index] == pytest.approx(
                measured["test_loss"][0], rel=1e-5
            )
    # The surfaces' models are trained again from the chosen settings: their centre
    # is the loss the equal-epochs study measured on report seed 0.
    study = result["studies"]["equal_epochs"]
    for name, surface in result["surfaces"].items():
        i = int(np.argmin(np.abs(surface.alphas)))
        j = int(np.argmin(np.abs(surface.betas)))
        assert surface.alphas[i] == 0.0 and surface.betas[j] == 0.0
        assert surface.losses.shape == (5, 5)
        assert surface.losses[i, j] == pytest.approx(
            study.protocol.get(name).per_seed["train_loss"][0], rel=1e-4
        )


# The committed default run ---------------------------------------------------------


def test_committed_run_is_on_the_protocol_and_its_tables_hold():
    module = load(NAME)
    summary = (COMMITTED / f"{NAME}.md").read_text(encoding="utf-8")
    results = json.loads((COMMITTED / f"{NAME}.json").read_text(encoding="utf-8"))
    assert_tables_match_the_per_seed_values(summary, results, module.LABELS)
    assert_protocol(results)
    settings = module.SETTINGS[False]
    for budget, result in results.items():
        assert len(result["protocol"]["seeds"]) >= 8
        assert result["protocol"]["budget"]["amount"] == settings[budget]
    runs = results["equal_steps"]["runs"]
    assert set(runs) == set(settings["runs"])
    lars = runs["lars"]["config"]
    assert lars["optimizer"] == "LARS" and lars["trust_coefficient"] == 0.001
    assert lars["weight_decay"] > 0 and lars["warmup_epochs"] > 0
    assert all(0.29 < lr < 31 for lr in runs["lars"]["learning_rate_grid"])
    # The summary states the run's wall-clock and CPU time.
    assert re.search(r"_Run in \d+ s \(\d+ s of CPU time\)", summary)


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


def test_paired_verdict_says_significant_only_where_the_interval_excludes_zero():
    module = load(NAME)
    assert module.paired_verdict(_interval(0.012, 0.002, 0.022), 100.0) == (
        "+1.20 [+0.20, +2.20], significant at 95 %"
    )
    assert module.paired_verdict(_interval(-0.01, -0.03, 0.01), 100.0) == (
        "-1.00 [-3.00, +1.00], not significant (the interval contains 0)"
    )
    one = Interval(0.5, math.nan, math.nan, math.nan, 1)
    assert "one seed: no interval, no verdict" in module.paired_verdict(one)
    assert module.paired_verdict(None).startswith("n/a")


def test_keskar_verdict_and_reproduction():
    module = load(NAME)
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
    assert module.keskar_verdict(both) == (
        "The large batch's minimum is sharper by λ_max and the Hessian trace "
        "(significant at 95 %) only; its test accuracy is lower, significant at 95 %."
    )
    assert module.reproduces(both)
    flat = _Study(
        {
            "lambda_max": zero,
            "hessian_trace": down,
            "keskar_sharpness": zero,
            "test_accuracy": zero,
        }
    )
    assert module.keskar_verdict(flat) == (
        "The large batch's minimum is sharper by none of the three measures at "
        "95 %, flatter by the Hessian trace (significant at 95 %); its test "
        "accuracy is not significantly different at 95 %."
    )
    assert not module.reproduces(flat)
    # Sharper but not worse: not a reproduction.
    assert not module.reproduces(_Study({"lambda_max": up, "test_accuracy": zero}))


def test_a_run_below_half_accuracy_is_failed_and_not_drawn():
    module = load(NAME)
    assert module.failed(_Study({}, accuracy=0.3), "lars")
    assert module.failed(_Study({}, accuracy=None), "lars")
    assert not module.failed(_Study({}, accuracy=0.97), "lars")
    from matplotlib.figure import Figure

    axes = Figure().add_subplot()
    values = np.array([0.95, 0.97, 0.96, 0.99])
    module.interval_rows(
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


def test_ring_rise_on_a_paraboloid():
    module = load(NAME)
    grid = np.linspace(-1.0, 1.0, 17)  # the default run's grid, step 0.125
    a, b = np.meshgrid(grid, grid, indexing="ij")
    surface = LossSurface(alphas=grid, betas=grid, losses=3.0 + a**2 + b**2)
    r = np.hypot(a, b)
    ring = np.abs(r - 0.5) <= 0.0625
    # The mean of r² over the grid points within half a step of the circle.
    expected = float(np.mean(r[ring] ** 2))
    assert module.ring_rise(surface) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.3  # near 0.5² = 0.25
