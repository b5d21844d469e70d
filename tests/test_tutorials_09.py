"""Tutorial 09 (the critical batch size): its quick run under papermill, checked
against the closed forms of the fit it reports."""

import math

import numpy as np
import pytest
from notebooks import execute, tensorflow_only

pytestmark = [pytest.mark.slow, tensorflow_only]

NAME = "09_critical_batch_size"
FIGURES = ("09_critical_batch.png", "09_pareto.png")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return execute(NAME, tmp_path_factory.mktemp(NAME))


def test_writes_and_shows_its_figures(executed):
    executed.assert_shows(FIGURES)


def test_the_fit_is_the_hyperbola_it_reports(executed):
    experiment = executed.results["result"]
    assert executed.results["seeds"] == 2 and experiment["seeds"] == [0, 1]
    fit = experiment["fit"]
    s_min, e_min = fit["min_steps"], fit["min_examples"]
    b_crit = fit["critical_batch_size"]
    # E_min = S_min · B_crit, the definition of the critical batch size.
    assert e_min == pytest.approx(s_min * b_crit, rel=1e-12)
    # The fit minimizes Σ (log S − log S_min(1 + B_crit/B))² over the runs: its
    # residual is what the runs' steps give, recomputed here.
    residuals = [
        math.log(steps) - math.log(s_min * (1 + b_crit / batch["batch_size"]))
        for batch in experiment["batches"]
        for steps in (run["steps"] for run in batch["runs"])
        if steps is not None
    ]
    assert fit["points"] == len(residuals) > 0
    assert fit["rms_log_residual"] == pytest.approx(
        math.sqrt(np.mean(np.square(residuals))), rel=1e-9
    )
    # At the least-squares optimum the residuals' gradient w.r.t. log S_min is 0.
    assert abs(np.mean(residuals)) < 1e-6


def test_the_tables_show_the_fit_and_every_batch(executed):
    shown = "\n".join(executed.markdown_outputs())
    fit = executed.results["result"]["fit"]
    assert f"B_crit = {fit['critical_batch_size']:.1f}" in shown
    for batch in executed.results["result"]["batches"]:
        size = batch["batch_size"]
        reached = [run for run in batch["runs"] if run["steps"] is not None]
        # the table's "fitted steps" column is S_min (1 + B_crit / B)
        fitted = fit["min_steps"] * (1 + fit["critical_batch_size"] / size)
        row = next(
            line for line in shown.splitlines() if line.startswith(f"| {size} |")
        )
        assert f"{fitted:.4g}" in row
        assert f"{len(reached)}/{len(batch['runs'])}" in row
