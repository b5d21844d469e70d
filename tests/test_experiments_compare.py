"""`keras_optnotes.experiments.compare`: the library function, its result, bad input."""

import dataclasses
import math
import subprocess
import sys

import pytest

from keras_optnotes import data
from keras_optnotes.experiments import compare
from keras_optnotes.experiments.compare import Comparison, OptimizerRun


def _run(**history):
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return OptimizerRun(
        optimizer="Adam",
        learning_rate=0.01,
        history={key: tuple(history[key]) for key in keys},
        ms_per_step=(30.0, 5.0, 7.0, 6.0),
        steps_per_epoch=45,
    )


def test_every_optimizer_starts_from_the_same_weights(capsys):
    """With a negligible step, every rule's first-epoch loss is the same."""
    # Zero learning rates are refused, so use a tiny one: every rule then keeps the
    # initial weights to ~1e-6 and all first-epoch losses agree.
    split = data.load("digits", seed=0, max_samples=64)
    lines = []
    comparison = compare.run_comparison(
        split,
        {"GradientDescent": 1e-7, "momentum": 1e-7},
        epochs=1,
        progress=lines.append,
    )
    first_losses = [r.history["loss"][0] for r in comparison.runs]
    assert first_losses[0] == pytest.approx(first_losses[1], abs=1e-5)
    # Ten classes from small random weights: the loss starts near ln 10.
    assert abs(first_losses[0] - math.log(10)) < 0.3
    momentum = comparison.get("MOMENTUM")
    assert momentum.optimizer == "Momentum"  # names are resolved to class names
    assert momentum.steps_per_epoch == 2 and len(momentum.ms_per_step) == 1
    assert momentum.steady_ms_per_step() is None  # one epoch: no steady-state figure
    assert lines == [
        "[1/2] GradientDescent (learning_rate=1e-07)",
        "[2/2] Momentum (learning_rate=1e-07)",
    ]
    assert capsys.readouterr().out == ""  # the library prints nothing
    assert (comparison.dataset, comparison.train_samples) == ("digits", 64)
    assert (comparison.epochs, comparison.batch_size, comparison.seed) == (1, 32, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        comparison.runs = ()


def test_rows_summarize_the_curves():
    # By hand: the best validation loss is at epoch 2 (NaN is skipped), the median
    # of epochs 2+ of (5, 7, 6) ms is 6, and epoch 1 took 30 ms x 45 steps = 1.35 s.
    run = _run(
        loss=(2.0, 1.0, 0.5, 0.25),
        accuracy=(0.1, 0.5, 0.7, 0.9),
        val_loss=(2.1, 0.9, math.nan, 1.2),
        val_accuracy=(0.2, 0.6, 0.1, 0.55),
    )
    assert run.best_val_loss_epoch() == 2
    assert run.table_row() == ["Adam", 0.01, 0.25, 0.6, 2, 6.0, 1.35]
    assert len(run.table_row()) == len(compare.TABLE_COLUMNS)
    rows = run.history_rows()
    assert rows[2][:5] == ["Adam", 0.01, 3, 0.5, 0.7] and math.isnan(rows[2][5])
    assert rows[2][6:] == [0.1, 7.0]
    assert rows[3] == ["Adam", 0.01, 4, 0.25, 0.9, 1.2, 0.55, 6.0]
    assert all(len(row) == len(compare.HISTORY_COLUMNS) for row in rows)
    diverged = _run(
        loss=(math.nan,) * 4,
        accuracy=(0.1,) * 4,
        val_loss=(math.nan,) * 4,
        val_accuracy=(0.1,) * 4,
    )
    assert diverged.best_val_loss_epoch() is None
    comparison = Comparison("digits", 10, 4, 32, 0, True, (run,))
    assert comparison.table_rows() == [run.table_row()]
    assert comparison.history_rows() == rows
    with pytest.raises(KeyError, match="'Momentum' was not run; runs: Adam"):
        comparison.get("momentum")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"learning_rates": {}}, ["learning_rates", "{}"]),
        ({"learning_rates": {"newton": 1.0}}, ["'newton'", "GradientDescent", "Adam"]),
        ({"learning_rates": {"Adam": 0.0}}, ["learning_rates['Adam']", "=0.0", "(0.0"]),
        ({"learning_rates": {"adam": math.nan}}, ["learning_rates['adam']", "nan"]),
        ({"epochs": 0}, ["epochs", "=0", ">= 1"]),
        ({"batch_size": 2.5}, ["batch_size", "2.5"]),
        ({"seed": -1}, ["seed", "-1", ">= 0"]),
        ({"jit_compile": "yes"}, ["jit_compile", "'yes'", "True or False"]),
    ],
)
def test_bad_arguments_raise_before_training(kwargs, words, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although an argument is bad")

    monkeypatch.setattr(compare, "_train_each", must_not_train)
    kwargs = {"learning_rates": {"Adam": 0.01}, **kwargs}
    split = data.load("spirals", num_samples=40)
    with pytest.raises(ValueError) as error:
        compare.run_comparison(split, **kwargs)
    for word in words:
        assert word in str(error.value)


def test_rule_names():
    assert compare.rule_name(" nesterov_momentum") == "NesterovMomentum"
    assert compare.rule_name("RMSPROP") == "RMSprop"
    for bad in ("lbfgs", "", None):
        with pytest.raises(ValueError, match="accepted: GradientDescent, Momentum"):
            compare.rule_name(bad)


def test_default_learning_rates_cover_every_rule_in_order():
    from keras_optnotes.optimizers import list_rules

    assert compare.RULES == tuple(compare.DEFAULT_LEARNING_RATES) == list_rules()


def test_importing_the_experiments_does_not_import_tensorflow():
    code = (
        "import sys, keras_optnotes.experiments; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# The ranking over seeds: a hand-built protocol result, checked against SciPy.


def _ranking():
    import numpy as np

    from keras_optnotes.experiments import protocol

    seeds = protocol.make_seeds(4, tuning=2)
    accuracies = {
        "Momentum": [0.95, 0.945, 0.96, 0.95],
        "Adam": [0.97, 0.96, 0.98, 0.97],
        "GradientDescent": [0.90, 0.97, 0.93, 0.91],
    }
    arms = []
    for rule, accuracy in accuracies.items():
        grid = protocol.log_grid(compare.DEFAULT_LEARNING_RATES[rule])
        candidates = tuple({"learning_rate": lr} for lr in grid)
        search = protocol.GridSearch(
            candidates, seeds.tuning, ((0.5, 0.5), (0.9, 0.9), (0.8, 0.8)), 1
        )
        per_seed = {
            "test_accuracy": tuple(accuracy),
            "test_loss": tuple(1.0 - np.asarray(accuracy)),
            "train_loss": (0.1, 0.1, 0.1, 0.1),
        }
        config = {"optimizer": rule, "batch_size": 32, **search.best}
        arms.append(protocol.ArmResult(rule, config, search, seeds.report, per_seed))
    result = protocol.ProtocolResult(
        "digits",
        {"train": 1150, "validation": 288, "test": 359},
        seeds,
        protocol.Budget("epochs", 10),
        tuple(arms),
        "Momentum",
    )
    return compare.Ranking(result, 32, 5.0), accuracies


def test_ranking_orders_by_mean_test_accuracy_and_pairs_against_the_best():
    import numpy as np
    from scipy import stats

    ranking, accuracies = _ranking()
    assert ranking.ranked() == ["Adam", "Momentum", "GradientDescent"]
    data = ranking.to_dict()
    assert data["ranking"] == ["Adam", "Momentum", "GradientDescent"]
    assert data["protocol"]["best"] == "Adam"
    for rule in ("Momentum", "GradientDescent"):
        d = np.subtract(accuracies[rule], accuracies["Adam"])
        low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
        entry = data["runs"][rule]["difference_vs_best"]["test_accuracy"]
        assert entry["ci95"] == pytest.approx([low, high], rel=1e-12)
    a = np.asarray(accuracies["GradientDescent"])
    low, high = stats.t.interval(0.95, 3, loc=a.mean(), scale=stats.sem(a))
    assert data["runs"]["GradientDescent"]["test_accuracy"]["ci95"] == pytest.approx(
        [low, high], rel=1e-12
    )
    rows = ranking.table_rows()
    assert [row[0] for row in rows] == [1, 2, 3]
    # Momentum is 1.5-2 points below Adam on every seed: significant; gradient descent's
    # spread leaves its 4.25-point deficit inside a wide interval: not.
    assert [row[-1] for row in rows] == ["—", "yes", "no"]
    assert rows[0][2] == f"{compare.DEFAULT_LEARNING_RATES['Adam']:.3g}"
    assert len(ranking.per_seed_rows()) == 12


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rules": ["adam", "lbfgs"]}, ["lbfgs"]),
        ({"rules": "adam"}, ["rules", "'adam'"]),
        ({"seeds": 1}, ["seeds=1"]),
        ({"tuning_seeds": 0}, ["tuning_seeds=0"]),
        ({"grid_size": 2}, ["grid_size=2"]),
        ({"epochs": 0}, ["epochs=0"]),
    ],
)
def test_rank_rules_bad_arguments_raise_before_training(kwargs, words, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although an argument is bad")

    monkeypatch.setattr(compare, "_train_rule", must_not_train)
    split = data.load("spirals", num_samples=40)
    with pytest.raises(ValueError) as error:
        compare.rank_rules(split, **kwargs)
    for word in words:
        assert word in str(error.value)
