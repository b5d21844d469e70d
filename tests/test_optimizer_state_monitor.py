"""`effective_learning_rates` and `OptimizerStateMonitor` for every rule, in float64.

The rules run a few steps on float64 variables; `reference_rules` runs the same steps in
NumPy, and η_eff is written here from each rule's equation on the reference's state
(never from the package's code). The monitor looks through Keras' wrappers:
`LossScaleOptimizer` (mixed precision) and `MultiOptimizer` (one summary per inner
rule).
"""

import keras
import numpy as np
import pytest
import reference_rules

from keras_optnotes import optimizers
from keras_optnotes.callbacks import OptimizerStateMonitor, effective_learning_rates

SHAPES = [(3, 2), (2,)]
STEPS = 5
LR = 0.05
LR32 = float(np.float32(LR))


def _eta_effective(rule, kwargs, ref, t):
    """η_eff of the next step from the reference state `ref` after t steps."""
    if rule in ("GradientDescent", "Momentum", "NesterovMomentum"):
        return np.full(ref.shape, LR32)
    eps = kwargs.get("epsilon", 1e-6 if rule == "Adadelta" else 1e-8)
    if rule == "Adadelta":
        return LR32 * np.sqrt(ref.Ed + eps) / np.sqrt(ref.Eg + eps)
    inside = kwargs.get("epsilon_inside_sqrt", True)
    if rule in ("Adagrad", "RMSprop"):
        G = ref.G
        return LR32 / np.sqrt(G + eps) if inside else LR32 / (np.sqrt(G) + eps)
    v = ref.v_hat if kwargs.get("amsgrad") else ref.v
    bias_2 = 1.0 - kwargs.get("beta_2", 0.999) ** t
    if inside:
        return LR32 * np.sqrt(bias_2) / np.sqrt(v + eps)
    return LR32 / (np.sqrt(v / bias_2) + eps)


CASES = [
    ("GradientDescent", {}),
    ("Momentum", {"momentum": 0.8}),
    ("NesterovMomentum", {}),
    ("Adagrad", {"initial_accumulator_value": 0.1}),
    ("Adagrad", {"epsilon_inside_sqrt": False, "epsilon": 1e-3}),
    ("Adadelta", {"rho": 0.9, "epsilon": 1e-4}),
    ("RMSprop", {}),
    ("RMSprop", {"epsilon_inside_sqrt": False, "rho": 0.8}),
    ("Adam", {}),
    ("Adam", {"epsilon_inside_sqrt": False, "beta_2": 0.99}),
    ("Adam", {"amsgrad": True, "beta_2": 0.9}),
    ("Adam", {"amsgrad": True, "epsilon_inside_sqrt": False, "beta_2": 0.9}),
]


@pytest.mark.parametrize(
    "rule, kwargs", CASES, ids=[r + "".join(f"-{k}" for k in kw) for r, kw in CASES]
)
def test_effective_learning_rates_match_numpy_for_every_rule(rule, kwargs):
    rng = np.random.default_rng(1)
    variables = [keras.Variable(rng.normal(size=s), dtype="float64") for s in SHAPES]
    thetas = [v.numpy() for v in variables]
    refs = [reference_rules.RULES[rule](LR32, s, **kwargs) for s in SHAPES]
    for ref, s in zip(refs, SHAPES):
        ref.shape = s
    optimizer = optimizers.get(rule, learning_rate=LR, **kwargs)
    for t in range(1, STEPS + 1):
        # Large and shrinking gradients, so that AMSGrad's max(v̂, v) keeps old values.
        grads = [rng.normal(size=s) * 4.0 / t**2 for s in SHAPES]
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        thetas = [r.step(th, g, t) for r, th, g in zip(refs, thetas, grads)]
        expected = np.concatenate(
            [_eta_effective(rule, kwargs, r, t).ravel() for r in refs]
        )
        np.testing.assert_allclose(
            effective_learning_rates(optimizer), expected, rtol=1e-12
        )
    if kwargs.get("amsgrad"):
        assert any(np.any(r.v_hat > r.v) for r in refs)  # the max mattered


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, x @ np.float32([[1.0], [-2.0], [0.5]])


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, "tanh"), keras.layers.Dense(1)]
    )


def _fit_and_check(model, rules, suffix=lambda optimizer: ""):
    """Two epochs with the monitor; the last logged summaries of each rule equal the
    percentiles of its `effective_learning_rates`."""
    history = model.fit(
        *_data(),
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[OptimizerStateMonitor()],
    ).history
    for optimizer in rules:
        values = effective_learning_rates(optimizer)
        for name, q in (("p5", 5), ("median", 50), ("p95", 95)):
            key = f"effective_learning_rate_{name}{suffix(optimizer)}"
            assert history[key][-1] == pytest.approx(
                np.percentile(values, q), rel=1e-12
            )
    return history


def test_monitor_looks_through_a_loss_scale_optimizer():
    model = _model()
    inner = optimizers.Adagrad(0.1)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(inner), loss="mse")
    _fit_and_check(model, [inner])
    # The loss-scaled wrapper is accepted by the function too.
    np.testing.assert_array_equal(
        effective_learning_rates(model.optimizer), effective_learning_rates(inner)
    )


def test_monitor_reports_each_rule_inside_a_multi_optimizer():
    model = _model()
    first, last = optimizers.Adam(0.01, name="hidden"), optimizers.Momentum(0.02)
    selector = keras.optimizers.OptimizerMap(default_optimizer=last)
    selector[model.layers[0].path + "/.*"] = first
    model.compile(optimizer=keras.optimizers.MultiOptimizer(selector), loss="mse")
    history = _fit_and_check(model, [first, last], suffix=lambda o: f"_{o.name}")
    assert "effective_learning_rate_median" not in history
    assert effective_learning_rates(first).size == 3 * 4 + 4
    with pytest.raises(ValueError, match="MultiOptimizer.*one of its optimizers"):
        effective_learning_rates(model.optimizer)


def test_monitor_names_a_foreign_optimizer_inside_a_multi_optimizer():
    model = _model()
    selector = keras.optimizers.OptimizerMap(default_optimizer=optimizers.Adam())
    selector[model.layers[0].path + "/.*"] = keras.optimizers.SGD(name="plain_sgd")
    model.compile(optimizer=keras.optimizers.MultiOptimizer(selector), loss="mse")
    with pytest.raises(ValueError, match="SGD.*plain_sgd"):
        model.fit(*_data(), verbose=0, callbacks=[OptimizerStateMonitor()])


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_monitor_runs_under_mixed_precision(mixed_float16):
    model = _model()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    _fit_and_check(model, [model.optimizer.inner_optimizer])
