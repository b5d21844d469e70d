"""`keras-optnotes critical-batch` and its experiment, against independent references.

The fit is checked on data generated from known S_min and B_crit and against a brute
scan; the learning-rate tuning (with its early stops) against the plain argmin of a
table of steps; the steps to target of a quick run against a hand-written training
loop over the same batches; the intervals are `protocol.mean_interval`'s, tested there.
"""

from __future__ import annotations

import itertools
import json
import math

import keras
import numpy as np
import pytest

from keras_optnotes import cli
from keras_optnotes.experiments import critical_batch as cb

# --- the fit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "min_steps, critical",
    [(123.4, 56.7), (80.0, 3.0), (1500.0, 2000.0), (10.0, 300.0)],
)
def test_the_fit_recovers_known_parameters_from_exact_data(min_steps, critical):
    sizes = np.array([8, 16, 32, 64, 128, 256, 512], np.float64)
    steps = min_steps * (1.0 + critical / sizes)
    fit = cb.fit_critical_batch(sizes, steps)
    assert fit.min_steps == pytest.approx(min_steps, rel=1e-6)
    assert fit.critical_batch_size == pytest.approx(critical, rel=1e-6)
    assert fit.min_examples == pytest.approx(min_steps * critical, rel=1e-6)
    assert fit.rms_log_residual < 1e-8
    # E = B S and E = E_min (1 + B / B_crit) are the same curve.
    np.testing.assert_allclose(fit.examples(sizes), sizes * steps, rtol=1e-6)


def test_the_fit_minimizes_the_log_squared_error_of_noisy_points():
    rng = np.random.default_rng(3)
    sizes = np.repeat([8.0, 16, 32, 64, 128, 256, 512], 4)
    steps = 200.0 * (1.0 + 40.0 / sizes) * np.exp(rng.normal(0.0, 0.15, sizes.size))
    fit = cb.fit_critical_batch(sizes, steps)

    # Independent reference: a dense scan of B_crit, S_min profiled out by hand.
    def cost(critical):
        log_min = np.mean(np.log(steps) - np.log(1 + critical / sizes))
        return np.sum((np.log(steps) - log_min - np.log(1 + critical / sizes)) ** 2)

    scan = np.geomspace(1.0, 1000.0, 200_001)
    costs = np.array([cost(c) for c in scan])
    best = scan[np.argmin(costs)]
    assert fit.critical_batch_size == pytest.approx(best, rel=1e-4)
    assert np.sum(np.log(steps / fit.steps(sizes)) ** 2) <= costs.min() + 1e-12


@pytest.mark.parametrize(
    "sizes, steps, name",
    [
        ([8, 16], [100.0], "same length"),
        ([8, 8, 8], [100.0, 90.0, 95.0], "two distinct"),
        ([8, 0], [100.0, 50.0], "batch_sizes"),
        ([8, 16], [100.0, float("nan")], "steps"),
    ],
)
def test_the_fit_refuses_bad_points(sizes, steps, name):
    with pytest.raises(ValueError, match=name):
        cb.fit_critical_batch(sizes, steps)


# --- the noise scale on a finite training set ---------------------------------------


def test_finite_population_correction_recovers_the_exact_population_values():
    rng = np.random.default_rng(1)
    population = rng.normal(0.3, 1.0, size=(8, 3))  # N = 8 per-example gradients
    n = len(population)
    mean = population.mean(axis=0)
    trace = np.sum(population.var(axis=0))  # tr(Σ), Σ divided by N
    small, big = 2, 4

    # Exact E|G_B|² over every batch of B distinct examples, by enumeration.
    def expected(b):
        norms = [
            np.sum(population[list(batch)].mean(axis=0) ** 2)
            for batch in itertools.combinations(range(n), b)
        ]
        return np.mean(norms)

    small_sq, big_sq = expected(small), expected(big)
    # What GradientNoiseScale's independent-example estimator makes of them.
    iid_norm = (big * big_sq - small * small_sq) / (big - small)
    iid_trace = (small_sq - big_sq) / (1 / small - 1 / big)
    norm, corrected = cb.finite_population_estimates(iid_norm, iid_trace, small, big, n)
    assert norm == pytest.approx(np.sum(mean**2), rel=1e-12)
    assert corrected == pytest.approx(trace, rel=1e-12)
    # With an endless population the correction vanishes.
    assert cb.finite_population_estimates(0.5, 2.0, 16, 256, 10**15) == pytest.approx(
        (0.5, 2.0), rel=1e-9
    )


# --- the loss -------------------------------------------------------------


def test_training_cross_entropy_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]])
    y = np.array([0, 1, 0])
    expected = -(math.log(0.7) + math.log(0.1) + math.log(1e-7)) / 3
    assert cb.training_cross_entropy(p, y) == pytest.approx(expected, abs=1e-12)


# --- the tuning ------------------------------------------------------------------------


class _TableTrainer:
    """Steps to target read from a table; honours the cap as the real trainer does."""

    def __init__(self, table):
        self.table = table  # {(rate, seed): steps or None}
        self.calls = []

    def run(self, batch_size, learning_rate, seed, target, cap):
        self.calls.append((learning_rate, seed, cap))
        steps = self.table[learning_rate, seed]
        if cap < 1:
            return None, "pruned", 1.0
        if steps is None or steps > cap:
            return None, "stopped", 1.0
        return steps, "reached", target


@pytest.mark.parametrize("guess", [0.1, 0.4, 1.6])
def test_tuning_chooses_the_fewest_mean_steps_whatever_the_order(guess):
    table = {
        (0.1, 0): 900,
        (0.1, 1): 1000,
        (0.2, 0): 500,
        (0.2, 1): 520,
        (0.4, 0): 300,
        (0.4, 1): 420,  # mean 360: the best
        (0.8, 0): 200,
        (0.8, 1): 600,  # mean 400: fast on one seed only
        (1.6, 0): None,
        (1.6, 1): None,  # diverges
    }
    trainer = _TableTrainer(table)
    rate, runs = cb._tune(
        trainer, 32, sorted({r for r, _ in table}), guess, (0, 1), 0.1, 5000, None
    )
    means = {r: np.mean([table[r, s] for s in (0, 1)]) for r in (0.1, 0.2, 0.4, 0.8)}
    assert rate == min(means, key=means.get) == 0.4
    by_rate = {run.learning_rate: run for run in runs if run.steps is not None}
    assert 0.4 in by_rate
    # An early stop happened only where the value could no longer win.
    for run in runs:
        if run.outcome == "pruned":
            assert means.get(run.learning_rate, math.inf) > 360


def test_tuning_breaks_ties_towards_the_smaller_rate():
    table = {(0.2, 0): 100, (0.4, 0): 100}
    for guess in (0.2, 0.4):
        rate, _ = cb._tune(
            _TableTrainer(table), 8, [0.2, 0.4], guess, (0,), 0.1, 500, None
        )
        assert rate == 0.2


def test_no_rate_reaching_the_target_chooses_none():
    table = {(0.2, 0): None, (0.4, 0): None}
    rate, runs = cb._tune(_TableTrainer(table), 8, [0.2, 0.4], 0.3, (0,), 0.1, 50, None)
    assert rate is None
    assert {run.outcome for run in runs} == {"budget"}


# --- the figure ---------------------------------------------------------------------------


def _hand_made_result():
    """Steps from S = 100 (1 + 64 / B) at B = 8 … 512, two seeds; no noise scale."""
    sizes = (8, 32, 128, 512)
    exact = {b: 100.0 * (1.0 + 64.0 / b) for b in sizes}
    batches = tuple(
        cb.BatchSizeResult(
            b, 0.1, (), tuple(
                cb.TargetRun(b, 0.1, seed, round(exact[b] * f), "target", 0.5)
                for seed, f in ((0, 0.9), (1, 1.1))
            ),
        )
        for b in sizes
    )  # fmt: skip
    fit = cb.fit_critical_batch(
        [b for b in sizes for _ in range(2)],
        [r.steps for batch in batches for r in batch.runs],
    )
    return cb.CriticalBatchExperiment(
        "hand", 1000, 0.5, (0.1,), (1000,), (0, 1), 10_000, 8, (8, 64), 4,
        batches, fit, (), 0.0,
    )  # fmt: skip


def test_plot_critical_batch_draws_into_given_axes_and_writes_nothing(
    tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    result = _hand_made_result()
    figure = Figure()
    steps_axes, examples_axes = figure.subplots(1, 2)
    assert cb.plot_critical_batch(result, axes=(steps_axes, examples_axes)) is figure
    assert list(tmp_path.iterdir()) == []
    # The fitted curve on each panel: S(B) on the left, B · S(B) on the right.
    for axes, scale in ((steps_axes, lambda b: 1.0), (examples_axes, lambda b: b)):
        (curve,) = [ln for ln in axes.get_lines() if ln.get_label().startswith("fit")]
        b, values = curve.get_xdata(), curve.get_ydata()
        expected = result.fit.min_steps * (1 + result.fit.critical_batch_size / b)
        np.testing.assert_allclose(values, expected * scale(b), rtol=1e-12)
    with pytest.raises(ValueError, match="axes"):
        cb.plot_critical_batch(result, axes=steps_axes)
    new = cb.plot_critical_batch(result, tmp_path / "figure.png")
    assert new is not figure and len(new.axes) == 2
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the experiment and the command -----------------------------------------------------

QUICK_ARGS = [
    "critical-batch",
    "--quick",
    "--batch-sizes",
    "8,64",
    "--learning-rates",
    "0.4",
    "--seeds",
    "2",
    "--target-loss",
    "0.6",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("critical")
    assert cli.main([*QUICK_ARGS, "--out", str(out)]) == 0
    return out, json.loads((out / "critical_batch.json").read_text())


def test_the_quick_run_writes_its_files_in_the_schema(quick_run):
    out, result = quick_run
    for name in (
        "critical_batch.json",
        "critical_batch.md",
        "critical_batch.csv",
        "critical_batch.png",
    ):
        assert (out / name).stat().st_size > 0
    markdown = (out / "critical_batch.md").read_text()
    assert markdown.startswith("# keras-optnotes critical-batch\n\n")
    assert [run["batch_size"] for run in result["runs"]] == [8, 64]
    for run in result["runs"]:
        assert run["learning_rate"] == 0.4
        assert run["learning_rate_grid"] == [0.4]
        assert len(run["steps_to_target"]) == 2
        assert all(isinstance(s, int) and s > 0 for s in run["steps_to_target"])
        assert run["examples_to_target"] == [
            s * run["batch_size"] for s in run["steps_to_target"]
        ]
    assert set(result["fit"]) >= {"S_min", "E_min", "B_crit"}
    assert result["fit"]["E_min"] == pytest.approx(
        result["fit"]["S_min"] * result["fit"]["B_crit"], rel=1e-12
    )
    traces = [v for run in result["runs"] for v in run["gradient_noise_trace"]]
    norms = [v for run in result["runs"] for v in run["gradient_squared_norm"]]
    assert result["gradient_noise_scale"]["B_simple"] == pytest.approx(
        np.mean(traces) / np.mean(norms), rel=1e-12
    )
    assert result["protocol"]["tuning_seeds"] == [1000]
    assert result["protocol"]["seeds"] == [0, 1]


def test_the_quick_run_fit_is_the_fit_of_its_steps(quick_run):
    _, result = quick_run
    sizes = [r["batch_size"] for r in result["runs"] for _ in r["steps_to_target"]]
    steps = [s for r in result["runs"] for s in r["steps_to_target"]]
    # Two batch sizes, two parameters: the curve goes through the geometric means.
    for size in (8, 64):
        mine = [s for b, s in zip(sizes, steps, strict=True) if b == size]
        fitted = result["fit"]["S_min"] * (1 + result["fit"]["B_crit"] / size)
        assert fitted == pytest.approx(math.exp(np.mean(np.log(mine))), rel=1e-6)


def _steps_by_hand(split, batch_size, rate, seed, target, limit):
    """Plain SGD with `train_on_batch` over the same independent batches."""
    from keras_optnotes.models import build_classifier

    x = split.x_train.reshape(len(split.x_train), -1)
    y = split.y_train
    model = build_classifier((64,), 10, seed=seed)
    model.compile(
        optimizer=keras.optimizers.SGD(rate), loss="sparse_categorical_crossentropy"
    )
    for step in range(limit):
        rng = np.random.default_rng([seed, batch_size, step])
        chosen = rng.choice(len(x), batch_size, replace=False)
        model.train_on_batch(x[chosen], y[chosen])
        p = np.asarray(model.predict_on_batch(x), np.float64)
        loss = -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-7)))
        if loss <= target:
            return step + 1
    return None


def test_steps_to_target_match_a_hand_written_loop(quick_run):
    from keras_optnotes import data

    _, result = quick_run
    split = data.load("digits")
    run = result["runs"][1]
    steps = run["steps_to_target"][0]
    assert (
        _steps_by_hand(split, 64, 0.4, result["protocol"]["seeds"][0], 0.6, steps + 5)
        == steps
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-sizes", "8"], "at least two distinct"),
        (["--batch-sizes", "8,x"], "comma-separated list of positive integers"),
        (["--learning-rates", "0.1,-1"], "numbers > 0"),
        (["--target-loss", "0"], "a finite number > 0"),
        (["--seeds", "0"], "a positive integer"),
        (["--batch-sizes", "8,4096"], "exceeds the 1438 training samples"),
    ],
)
def test_bad_options_are_one_line_and_status_2(argv, message, capsys, tmp_path):
    status = cli.main(["critical-batch", *argv, "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error.startswith("keras-optnotes critical-batch: error:")
    assert message in error
    assert "\n" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch_sizes": (8,)}, "batch_sizes"),
        ({"batch_sizes": (8, 5000)}, "batch_sizes"),
        ({"learning_rates": (0.1, 0.0)}, "learning_rates"),
        ({"target_loss": -1.0}, "target_loss"),
        ({"seeds": 0}, "seeds"),
        ({"noise_batches": (16, 40)}, "noise_batches"),
    ],
)
def test_bad_arguments_raise_at_the_call(kwargs, name):
    from keras_optnotes import data

    with pytest.raises(ValueError, match=name):
        cb.run_critical_batch(data.load("digits"), **kwargs)
