"""`keras_optnotes.experiments.sharpness`: the argument checks, the run names, the result.

The runs themselves are trained end to end by the command's quick test
(test_diagnostics_command.py), on every backend."""

import pytest

from keras_optnotes.data import Split
from keras_optnotes.experiments import sharpness
from keras_optnotes.experiments.sharpness import (
    RUNS,
    TABLE_COLUMNS,
    BatchSizeComparison,
    SolutionRun,
    check_runs,
    compare_batch_sizes,
)


def test_check_runs_keeps_the_order_of_training():
    assert check_runs(["swa", "large", "small", "swa"]) == ("small", "large", "swa")
    assert check_runs(list(RUNS)) == RUNS
    assert RUNS == ("small", "large", "sam", "asam", "lars", "swa", "lookahead")


@pytest.mark.parametrize("runs", [(), "small", ["small", "adamw"], [None]])
def test_check_runs_rejects(runs):
    with pytest.raises(ValueError, match="Argument `runs`.*accepted: small, large"):
        check_runs(runs)


def _tiny_split():
    import numpy as np

    x = np.zeros((8, 4), "float32")
    y = np.arange(8) % 2
    return Split(x_train=x, y_train=y, x_val=x, y_val=y, num_classes=2, name="tiny")


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"runs": ["small", "sgd"]}, "runs.*'sgd'"),
        ({"small_batch": 0}, "small_batch=0"),
        ({"small_batch": 32, "large_batch": 32}, "large_batch=32"),
        ({"epochs": 1.5}, "epochs=1.5"),
        ({"large_epochs": 0}, "large_epochs=0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"epsilon": float("nan")}, "epsilon=nan"),
        ({"subspace_dim": 0}, "subspace_dim=0"),
        ({"measure_samples": 0}, "measure_samples=0"),
        ({"trace_samples": 1}, r"trace_samples.*>= 2.*trace_samples=1"),
        ({"seed": -1}, "seed=-1"),
        ({"jit_compile": "yes"}, "jit_compile='yes'"),
        ({"keep_models": 1}, "keep_models=1"),
    ],
)
def test_bad_arguments_raise_before_training(keywords, message):
    with pytest.raises(ValueError, match=message):
        compare_batch_sizes(_tiny_split(), **keywords)


def _run(name, train_loss, val_loss, **fields):
    """A `SolutionRun` with made-up measurements; `fields` override them."""
    values = {
        "name": name,
        "setting": sharpness.SETTINGS[name],
        "batch_size": 16 if name == "small" else 512,
        "epochs": 3,
        "train_loss": train_loss,
        "train_accuracy": 0.9,
        "val_loss": val_loss,
        "val_accuracy": 0.8,
        "lambda_max": 2.0,
        "lambda_max_converged": True,
        "hessian_trace": 5.0,
        "trace_standard_error": 0.5,
        "keskar_sharpness": 1.0,
    }
    return SolutionRun(**{**values, **fields})


def test_result_rows():
    result = BatchSizeComparison(
        dataset="tiny",
        train_samples=8,
        measure_samples=8,
        small_batch=16,
        large_batch=512,
        learning_rate=0.003,
        epsilon=1e-3,
        trace_samples=2,
        seed=0,
        runs=(_run("small", 0.25, 0.5), _run("sam", 0.125, 1.0)),
        alphas=(0.0, 1.0),
        train_line=(0.25, 0.75),
        val_line=(0.5, 1.5),
    )
    assert result.get("sam").loss_gap == 0.875
    rows = result.table_rows()
    assert [len(row) for row in rows] == [len(TABLE_COLUMNS)] * 2
    assert rows[0][TABLE_COLUMNS.index("loss gap (val - train)")] == 0.25
    assert rows[1][:4] == ["sam", "SAM rho=0.05 around Adam", 512, 3]
    assert result.interpolation_rows() == [(0.0, 0.25, 0.5), (1.0, 0.75, 1.5)]
    assert dict(result.models) == {}  # kept only with keep_models=True
    with pytest.raises(KeyError, match="'lars' was not run; runs: small, sam"):
        result.get("lars")
