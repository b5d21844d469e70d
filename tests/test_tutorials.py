"""The tutorials' smoke runs: each writes its figure and shows what its docstring claims.

Each tutorial's `--quick` mode runs once per module, in-process (so TensorFlow is
imported once), into a temporary folder; the tests then check the numbers it printed
and returned against the claims it makes.
"""

import contextlib
import importlib.util
import io
import math
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the tutorials train with tf.function / TensorFlow",
    ),
]

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quick_run(name: str, tmp_path_factory):
    module = load(name)
    out = tmp_path_factory.mktemp(name)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = module.main(["--quick", "--out", str(out)])
    return module, out, result, printed.getvalue()


@pytest.fixture(scope="module")
def weight_decay(tmp_path_factory):
    return quick_run("weight_decay_vs_l2", tmp_path_factory)


@pytest.fixture(scope="module")
def adagrad(tmp_path_factory):
    return quick_run("adagrad_learning_rate_decay", tmp_path_factory)


@pytest.mark.parametrize("name", ["weight_decay_vs_l2", "adagrad_learning_rate_decay"])
def test_cli_defaults(name):
    module = load(name)
    args = module.parse_args([])
    assert args.out == "./optnotes-report/tutorials" and not args.quick
    assert module.__doc__ and "--quick" in module.__doc__


def test_weight_decay_writes_its_figure(weight_decay):
    module, out, result, _ = weight_decay
    figure = out / module.FIGURE
    assert result["figure"] == figure
    assert figure.stat().st_size > 10_000
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradient_descent_l2_equals_weight_decay(weight_decay):
    identity = weight_decay[2]["identity"]
    float64 = identity["GradientDescent (η=0.1), float64"]
    float32 = identity["GradientDescent (η=0.1), float32"]
    assert len(float64) == len(float32) == 20
    # One and the same update: what is left is rounding.
    assert float64.max() < 1e-12
    assert float32.max() < 1e-6


def test_adam_l2_differs_from_weight_decay(weight_decay):
    adam = weight_decay[2]["identity"]["Adam (η=0.001), float64"]
    # After one step the L2 model's weights already differ by a sizeable fraction of
    # η = 1e-3 (Adam's steps are about η per weight), and the gap grows.
    assert adam[0] > 1e-4
    assert adam[-1] > 10 * adam[0]


def test_adam_l2_shrinks_more_than_decoupled_decay(weight_decay):
    sweep = weight_decay[2]["sweep"]
    none = next(r for r in sweep if r["kind"] == "none")
    assert none["blank_left"] == pytest.approx(1.0, abs=1e-6)  # no data gradient
    for strength in {r["strength"] for r in sweep if r["kind"] != "none"}:
        l2, decay = (
            next(r for r in sweep if r["kind"] == k and r["strength"] == strength)
            for k in ("l2", "decay")
        )
        assert l2["kernel_norm"] < decay["kernel_norm"] <= none["kernel_norm"]
        assert l2["blank_left"] < decay["blank_left"] < 1.0
        assert all(math.isfinite(r["val_loss"]) for r in (l2, decay))
    # At α = λ = 1 the penalty wrecks the fit (near ln 10), decoupled decay does not.
    l2, decay = (
        next(r for r in sweep if r["kind"] == k and r["strength"] == 1.0)
        for k in ("l2", "decay")
    )
    assert l2["val_loss"] > decay["val_loss"]


def test_weight_decay_prints_its_tables(weight_decay):
    _, _, result, printed = weight_decay
    assert "| update rule, dtype |" in printed
    assert "| AdamW, λ = α |" in printed
    assert (
        f"{result['identity']['GradientDescent (η=0.1), float64'].max():.4g}" in printed
    )


def test_adagrad_writes_its_figure(adagrad):
    module, out, result, _ = adagrad
    figure = out / module.FIGURE
    assert result["figure"] == figure
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adagrad_step_size_falls_every_epoch(adagrad):
    module, _, result, _ = adagrad
    median = result["histories"]["Adagrad"][module.KEYS["median"]]
    assert len(median) == 4
    assert np.all(np.diff(median) < 0)
    # G only grows, so every percentile of η/√(G+ε) can only fall.
    for key in ("p5", "p95"):
        assert np.all(np.diff(result["histories"]["Adagrad"][module.KEYS[key]]) <= 0)


def test_adagrad_falls_more_than_rmsprop_and_adam(adagrad):
    rows = {row["rule"]: row for row in adagrad[2]["rows"]}
    assert rows["Adagrad"]["ratio"] < rows["RMSprop"]["ratio"]
    assert rows["Adagrad"]["ratio"] < rows["Adam"]["ratio"]
    assert rows["Adagrad"]["epochs_falling"] == 3
    for row in rows.values():
        assert row["ratio"] == pytest.approx(row["last"] / row["first"])


def test_adagrad_prints_its_table(adagrad):
    printed, rows = adagrad[3], adagrad[2]["rows"]
    assert "| rule | η | median step, epoch 1 |" in printed
    for row in rows:
        assert f"| {row['rule']} |" in printed
        assert f"{row['ratio']:.4g}" in printed
