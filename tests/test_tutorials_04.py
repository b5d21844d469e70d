"""Tutorial 04 (sharp and flat minima): the smoke run, and its bookkeeping by hand.

The `--quick` run happens once per module, in-process, into a temporary folder. The
tests check the files it writes, that every number is finite, that the surfaces and
Keskar's line pass through the experiment's own measurements (the loss at the centre
of a surface, and at α = 0 and α = 1 of the line, is the loss `compare_batch_sizes`
measured on the same subset, computed a different way), and the tutorial's summary
arithmetic (the seeds' means and spreads, the paired changes, the seed counts, the
ring rise, the verdicts) against hand-built results with known answers.
"""

import numpy as np
import pytest
from test_experiments_sharpness import _run as solution_run
from test_tutorials import finite_numbers, load, pytestmark  # noqa: F401

from keras_optnotes.diagnostics.results import LossSurface
from keras_optnotes.experiments.sharpness import BatchSizeComparison

NAME = "04_sharp_and_flat_minima"
FIGURES = (
    "04_sharp_and_flat_minima.png",
    "04_interpolation.png",
    "04_surfaces.png",
    "04_remedies.png",
)


def test_writes_figures_and_summary(numbered):
    module, out, result, printed = numbered(NAME)
    summary = (out / f"{NAME}.md").read_text(encoding="utf-8")
    assert summary.startswith("# 04 — ")
    for heading in ("## 1. Small", "## 2. Between", "## 3. The remedies"):
        assert heading in summary
    for figure in FIGURES:
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({figure})" in summary
    assert "Run in " in summary and "s of CPU time" in summary
    assert f"{out / NAME}.md" in printed
    assert "--quick" in module.__doc__ and '"Batch-size Matters"' in module.__doc__
    # Every run of the quick settings is in the table and in the remedies' table.
    for run in module.SETTINGS[True]["runs"]:
        assert f"| {module.LABELS[run]} |" in summary
    numbers = finite_numbers({k: v for k, v in result.items() if k != "results"})
    assert len(numbers) > 40 and np.all(np.isfinite(numbers))
    for run in result["results"][0].runs:
        assert np.all(np.isfinite(run.table_row()[4:]))


def test_seed_zero_keeps_every_runs_model_read_only(numbered):
    first = numbered(NAME)[2]["results"][0]
    assert set(first.models) == {run.name for run in first.runs}
    with pytest.raises(TypeError):
        first.models["extra"] = None
    # That they are the trained models: the surfaces drawn from them pass through
    # the experiment's measured losses (next test).


def test_surfaces_and_line_pass_through_the_measured_losses(numbered):
    result = numbered(NAME)[2]
    first = result["results"][0]
    for name, surface in result["surfaces"].items():
        i = int(np.argmin(np.abs(surface.alphas)))
        j = int(np.argmin(np.abs(surface.betas)))
        assert surface.alphas[i] == 0.0 and surface.betas[j] == 0.0
        # loss_surface's own batched forward pass against Keras' evaluate.
        assert surface.losses[i, j] == pytest.approx(
            first.get(name).train_loss, rel=1e-5
        )
        assert surface.losses.shape == (5, 5)
    alphas = np.asarray(first.alphas)
    np.testing.assert_allclose(alphas, -1.0 + 0.1 * np.arange(31), atol=1e-12)
    zero, one = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1)))
    for index, name in ((zero, "small"), (one, "large")):
        run = first.get(name)
        assert first.train_line[index] == pytest.approx(run.train_loss, rel=1e-5)
        assert first.val_line[index] == pytest.approx(run.val_loss, rel=1e-5)


# The summary arithmetic, on hand-built results -------------------------------------


def _run(name, train_loss, val_loss, accuracy, lam, trace=5.0, keskar=1.0):
    return solution_run(
        name,
        train_loss,
        val_loss,
        batch_size=16 if name == "small" else 256,
        train_accuracy=0.95,
        val_accuracy=accuracy,
        lambda_max=lam,
        hessian_trace=trace,
        keskar_sharpness=keskar,
    )


def _result(seed, runs):
    return BatchSizeComparison(
        dataset="digits",
        train_samples=100,
        measure_samples=64,
        small_batch=16,
        large_batch=256,
        learning_rate=0.003,
        epsilon=1e-3,
        trace_samples=2,
        seed=seed,
        runs=tuple(runs),
        alphas=(),
        train_line=(),
        val_line=(),
    )


HAND = [
    _result(
        0,
        [
            _run("small", 0.10, 0.30, 0.90, 10.0, trace=50.0, keskar=1.0),
            _run("large", 0.12, 0.40, 0.88, 20.0, trace=80.0, keskar=3.0),
            _run("sam", 0.20, 0.35, 0.87, 15.0),
        ],
    ),
    _result(
        1,
        [
            _run("small", 0.10, 0.50, 0.85, 12.0, trace=90.0, keskar=2.0),
            _run("large", 0.11, 0.45, 0.86, 18.0, trace=70.0, keskar=4.0),
            _run("sam", 0.25, 0.44, 0.80, 17.0),
        ],
    ),
]


def test_run_rows_means_spreads_and_paired_changes():
    module = load(NAME)
    rows = module.run_rows(HAND, ("small", "large", "sam"))
    gap_small = np.array([0.20, 0.40])
    assert rows["small"]["loss_gap"].mean == pytest.approx(0.30, abs=1e-15)
    # Sample standard deviation (ddof = 1) of two values: |a − b| / √2.
    assert rows["small"]["loss_gap"].std == pytest.approx(
        abs(gap_small[0] - gap_small[1]) / np.sqrt(2), abs=1e-15
    )
    assert rows["large"]["val_accuracy"].mean == pytest.approx(87.0, abs=1e-12)
    assert rows["large"]["error_gap"].mean == pytest.approx(8.0, abs=1e-12)
    # SAM against the large run of the same seed, not against the large mean.
    np.testing.assert_allclose(
        rows["sam"]["delta_loss_gap_values"], [0.15 - 0.28, 0.19 - 0.34], atol=1e-15
    )
    np.testing.assert_allclose(
        rows["sam"]["delta_val_accuracy_values"], [-1.0, -6.0], atol=1e-12
    )
    np.testing.assert_allclose(
        rows["sam"]["delta_lambda_max_values"], [-5.0, -1.0], atol=1e-15
    )
    assert rows["sam"]["delta_train_loss"].mean == pytest.approx(0.11, abs=1e-15)
    np.testing.assert_array_equal(rows["large"]["delta_loss_gap_values"], [0.0, 0.0])


def test_seed_counts_and_verdicts():
    module = load(NAME)
    counts = module.seed_counts(HAND)
    assert counts == {
        "sharper_lambda": 2,
        "sharper_trace": 1,  # 80 > 50 on seed 0, 70 < 90 on seed 1
        "sharper_keskar": 2,
        "larger_gap": 1,  # 0.28 > 0.20, 0.34 < 0.40
        "lower_accuracy": 1,  # 0.88 < 0.90, 0.86 > 0.85
        "reached_target": 2,  # 0.12 ≤ 0.10 + 0.02 and 0.11 ≤ 0.12
    }
    assert module.verdict(counts, 2) == (
        "**The large batch is sharper on every seed by λ_max and Keskar's "
        "ε-sharpness only, but it does not generalize worse on every seed** (gap "
        "larger on 1/2, accuracy lower on 1/2): Keskar's generalization gap does not "
        "reproduce at this scale."
    )
    every = {**counts, "sharper_trace": 2, "larger_gap": 2, "lower_accuracy": 2}
    assert module.verdict(every, 2) == (
        "**The large batch is sharper on every seed, by all three measures, and it "
        "generalizes worse on every seed.**"
    )
    none = {**counts, "sharper_lambda": 1, "sharper_keskar": 0}
    assert "by none of the measures, but" in module.verdict(none, 2)
    rows = module.run_rows(HAND, ("small", "large", "sam"))
    # SAM: gap smaller on both seeds, train loss up, accuracy down on both.
    assert module.remedy_verdict(rows["sam"], 2) == (
        "smaller gap by fitting worse (train loss up, accuracy down)"
    )
    assert module.remedy_verdict(rows["large"], 2) == (
        "gap smaller on 0/2 only: no reliable effect; accuracy higher on no seed"
    )


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
