"""Lookahead against the float64 NumPy reference of Zhang et al. 2019, Algorithm 1,
around this package's rules and Keras' own; the inner optimizer's state, schedule,
weight decay, loss scaling and saved state must survive the wrapper (the bugs of
tensorflow-addons' Lookahead: #2094, #2351, #1996).

Runs on every backend; TensorFlow-only tests are marked.
"""

import math

import keras
import numpy as np
import pytest
import reference_rules

from keras_optnotes import optimizers

BACKEND = keras.backend.backend()
SHAPES = [(3, 4), (5,)]
STEPS = 13  # not a multiple of k: the run ends in the middle of a period
LR = 0.05
LR32 = float(np.float32(LR))


def _gradients(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [
        [(rng.normal(size=s) + np.sin(t / 5)).astype(dtype) for s in SHAPES]
        for t in range(STEPS)
    ]


def _initial(dtype):
    rng = np.random.default_rng(1)
    return [rng.normal(size=s).astype(dtype) for s in SHAPES]


def _run(optimizer, dtype="float64", steps=STEPS):
    variables = [keras.Variable(x, dtype=dtype) for x in _initial(dtype)]
    history = []
    for grads in _gradients(dtype)[:steps]:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        history.append([keras.ops.convert_to_numpy(v).copy() for v in variables])
    return history


def _reference(make_inner, k, alpha, steps=STEPS, learning_rate=None):
    rules = [
        reference_rules.Lookahead(make_inner(s), x, k, alpha)
        for s, x in zip(SHAPES, _initial("float64"))
    ]
    thetas = _initial("float64")
    history = []
    for t, grads in enumerate(_gradients("float64")[:steps], start=1):
        for rule in rules:
            if learning_rate is not None:
                rule.inner.lr = learning_rate(t - 1)
        thetas = [r.step(w, g, t) for r, w, g in zip(rules, thetas, grads)]
        history.append(thetas)
    return history


def _assert_close(actual, expected, rtol):
    for step_a, step_e in zip(actual, expected, strict=True):
        for a, e in zip(step_a, step_e):
            np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol)


# -- trajectories --------------------------------------------------------------------

JIT = [True, False] if BACKEND == "tensorflow" else [True]


@pytest.mark.parametrize("jit_compile", JIT)
@pytest.mark.parametrize("k, alpha", [(5, 0.5), (3, 0.8), (1, 0.3)])
def test_around_momentum_matches_reference(k, alpha, jit_compile):
    inner = optimizers.Momentum(LR, momentum=0.9, jit_compile=jit_compile)
    actual = _run(optimizers.Lookahead(inner, sync_period=k, slow_step_size=alpha))
    expected = _reference(lambda s: reference_rules.Momentum(LR32, s, 0.9), k, alpha)
    _assert_close(actual, expected, 1e-12)


# Keras casts β and λ through float32 on TensorFlow (`ops.cast` of a Python float):
# values exact in float32 keep the float64 comparison exact on every backend.
ADAM = {"beta_1": 0.875, "beta_2": 1 - 2**-10}


def test_around_keras_adam_matches_reference():
    inner = keras.optimizers.Adam(LR, **ADAM)
    actual = _run(optimizers.Lookahead(inner, 4, 0.5))
    expected = _reference(lambda s: reference_rules.KerasAdamW(LR32, s, **ADAM), 4, 0.5)
    _assert_close(actual, expected, 1e-12)


def test_inner_weight_decay_is_applied():
    """tensorflow-addons #1996: the inner AdamW's decoupled decay was dropped."""
    # η = 2⁻⁴, λ = 2⁻²: Keras' PyTorch backend decays by w·(1 − ηλ) in float32,
    # exact only when 1 − ηλ is.
    inner = keras.optimizers.AdamW(2**-4, weight_decay=0.25, **ADAM)
    actual = _run(optimizers.Lookahead(inner, 4, 0.5))
    expected = _reference(
        lambda s: reference_rules.KerasAdamW(2**-4, s, weight_decay=0.25, **ADAM),
        4,
        0.5,
    )
    _assert_close(actual, expected, 1e-12)
    without_decay = _reference(
        lambda s: reference_rules.KerasAdamW(2**-4, s, **ADAM), 4, 0.5
    )
    assert not np.allclose(actual[-1][0], without_decay[-1][0], rtol=1e-3)


def test_inner_schedule_is_followed():
    # Rates exact in float32: the schedule's dtype differs between backends.
    rates = (0.125, 0.03125)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([10], list(rates))
    inner = optimizers.Momentum(schedule, momentum=0.5)
    actual = _run(optimizers.Lookahead(inner, 3, 0.5))
    expected = _reference(
        lambda s: reference_rules.Momentum(rates[0], s, 0.5),
        3,
        0.5,
        learning_rate=lambda step: rates[0] if step <= 10 else rates[1],
    )
    _assert_close(actual, expected, 1e-12)


def test_sync_period_one_and_step_one_is_the_inner_optimizer():
    plain = _run(keras.optimizers.Adam(LR), "float32")
    wrapped = _run(optimizers.Lookahead(keras.optimizers.Adam(LR), 1, 1.0), "float32")
    for a, b in zip(plain, wrapped):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_gradient_accumulation_counts_real_updates():
    """With 2 accumulated micro-steps per update and k = 2, the weights synchronize
    after every 4th call of apply: θ after 4 calls of GD(η=1) on g = 1 from θ = 0 is
    −2 (two updates), then φ = 0 + 0.5·(−2 − 0) = −1."""
    inner = optimizers.GradientDescent(1.0, gradient_accumulation_steps=2)
    optimizer = optimizers.Lookahead(inner, 2, 0.5)
    variable = keras.Variable([0.0], dtype="float64")
    values = []
    for _ in range(6):
        optimizer.apply([keras.ops.convert_to_tensor([1.0], "float64")], [variable])
        values.append(float(keras.ops.convert_to_numpy(variable)[0]))
    assert values == [0.0, -1.0, -1.0, -1.0, -1.0, -2.0]


def test_slow_weights_start_at_the_weights_of_the_first_step():
    """Weights set after `build()` (`load_weights`) are where the slow weights start:
    with k = 2, α = 0.5 and GD(η=1) on g = 1 from θ = 3 (set after building at 0):
    θ = 2, 1, then φ = 3 + 0.5·(1 − 3) = 2."""
    optimizer = optimizers.Lookahead(optimizers.GradientDescent(1.0), 2, 0.5)
    variable = keras.Variable([0.0], dtype="float64")
    optimizer.build([variable])
    variable.assign([3.0])
    for _ in range(2):
        optimizer.apply([keras.ops.convert_to_tensor([1.0], "float64")], [variable])
    assert float(keras.ops.convert_to_numpy(variable)[0]) == 2.0
    assert float(keras.ops.convert_to_numpy(optimizer.slow_weights[0])[0]) == 2.0


# -- delegation ------------------------------------------------------------------------


def test_learning_rate_and_iterations_are_the_inner_optimizers():
    inner = optimizers.Momentum(0.1)
    optimizer = optimizers.Lookahead(inner)
    optimizer.learning_rate = 0.02
    assert float(keras.ops.convert_to_numpy(inner.learning_rate)) == pytest.approx(0.02)
    variable = keras.Variable([1.0])
    for _ in range(3):
        optimizer.apply([keras.ops.ones((1,))], [variable])
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 3
    assert optimizer.iterations is inner.iterations
    # its (unused) counter, one slow weight, the inner optimizer's variables
    assert len(optimizer.variables) == 2 + len(inner.variables)


def _regression(seed=0, n=32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def _linear_model(dtype="float64"):
    model = keras.Sequential(
        [
            keras.Input((3,), dtype=dtype),
            keras.layers.Dense(1, kernel_initializer="zeros", dtype=dtype),
        ]
    )
    return model


def test_fit_equals_closed_form_gradient_descent_with_lookahead():
    """Full-batch fit of a float64 linear model through the backend's own train step
    (stateless on JAX) equals NumPy GD with Lookahead on the exact MSE gradient."""
    x, y = _regression()
    # Keras' array adapter feeds floats as floatx (float32): use exactly those values.
    x, y = (a.astype("float32").astype("float64") for a in (x, y))
    model = _linear_model()
    model.compile(
        optimizers.Lookahead(optimizers.GradientDescent(0.1), 3, 0.5),
        loss=keras.losses.MeanSquaredError(dtype="float64"),
    )
    model.fit(x, y, batch_size=len(x), epochs=8, shuffle=False, verbose=0)
    eta = float(np.float32(0.1))
    w, b = np.zeros((3, 1)), np.zeros(1)
    slow_w, slow_b = w.copy(), b.copy()
    for t in range(1, 9):
        residual = x @ w + b - y
        w = w - eta * 2 * x.T @ residual / len(x)
        b = b - eta * 2 * residual.mean(axis=0)
        if t % 3 == 0:
            slow_w, slow_b = slow_w + 0.5 * (w - slow_w), slow_b + 0.5 * (b - slow_b)
            w, b = slow_w.copy(), slow_b.copy()
    kernel, bias = model.get_weights()
    # Keras' PyTorch trainer loses float64 precision in this Dense kernel's gradient
    # (1.4e-8 relative after one step of plain GradientDescent, no Lookahead).
    rtol = 1e-7 if BACKEND == "torch" else 1e-12
    np.testing.assert_allclose(kernel, w, rtol=rtol)
    np.testing.assert_allclose(bias, b, rtol=rtol)


def test_reduce_lr_on_plateau_acts_on_the_inner_optimizer():
    x, y = _regression()
    model = _linear_model("float32")
    inner = optimizers.Momentum(1e-9)  # no progress: a plateau from the start
    model.compile(optimizers.Lookahead(inner), loss="mse")
    callback = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    assert float(keras.ops.convert_to_numpy(inner.learning_rate)) < 1e-9


# -- mixed precision -------------------------------------------------------------------


def test_fit_under_mixed_precision():
    """tensorflow-addons #2351. Keras wraps Lookahead in its LossScaleOptimizer."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        x, y = _regression()
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
        )
        model.compile(optimizers.Lookahead(keras.optimizers.Adam(0.01)), loss="mse")
        losses = model.fit(x, y, batch_size=8, epochs=4, verbose=0).history["loss"]
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, optimizers.Lookahead)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    # The loss scale reached the optimizer that unscales: not scaled twice.
    assert model.optimizer.inner_optimizer.loss_scale_factor is None


@pytest.mark.skipif(BACKEND == "jax", reason="LossScaleOptimizer.apply is stateful")
def test_skipped_loss_scale_step_leaves_fast_and_slow_weights():
    inner = optimizers.GradientDescent(1.0)
    optimizer = keras.optimizers.LossScaleOptimizer(
        optimizers.Lookahead(inner, 2, 0.5), initial_scale=4.0
    )
    variable = keras.Variable([0.0])
    four = keras.ops.convert_to_tensor([4.0])  # 1.0 scaled by 4
    optimizer.apply([four], [variable])  # θ = −1
    optimizer.apply([keras.ops.convert_to_tensor([math.inf])], [variable])  # skipped
    assert float(keras.ops.convert_to_numpy(variable)[0]) == -1.0
    assert int(keras.ops.convert_to_numpy(inner.iterations)) == 1
    optimizer.apply([keras.ops.convert_to_tensor([2.0])], [variable])  # scale 2 now
    # θ = −2 after the second real step, then φ = 0 + 0.5·(−2) = −1.
    assert float(keras.ops.convert_to_numpy(variable)[0]) == -1.0


# -- saving ------------------------------------------------------------------------------


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(6, "tanh"), keras.layers.Dense(1)]
    )


def _batches():
    x, y = _regression(n=64)
    return [
        (x[i : i + 8].astype("float32"), y[i : i + 8].astype("float32"))
        for i in range(0, 64, 8)
    ]


def test_resume_from_keras_file_mid_period_equals_uninterrupted_run(tmp_path):
    """tensorflow-addons #2094: the inner state was lost on save."""
    batches = _batches() * 2

    def make():
        return optimizers.Lookahead(
            keras.optimizers.AdamW(0.01, weight_decay=0.1), 5, 0.5
        )

    uninterrupted = _classifier()
    uninterrupted.compile(make(), loss="mse")
    for bx, by in batches:
        uninterrupted.train_on_batch(bx, by)

    first = _classifier()
    first.compile(make(), loss="mse")
    for bx, by in batches[:7]:  # 7 = one period of 5 and 2 steps into the next
        first.train_on_batch(bx, by)
    slow = [keras.ops.convert_to_numpy(v) for v in first.optimizer.slow_weights]
    assert not np.allclose(slow[0], keras.ops.convert_to_numpy(first.weights[0]))
    first.save(tmp_path / "mid.keras")
    resumed = keras.models.load_model(tmp_path / "mid.keras")
    assert isinstance(resumed.optimizer, optimizers.Lookahead)
    assert isinstance(resumed.optimizer.inner_optimizer, keras.optimizers.AdamW)
    for a, b in zip(resumed.optimizer.slow_weights, slow):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)
    for a, b in zip(resumed.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    for bx, by in batches[7:]:
        resumed.train_on_batch(bx, by)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_saved_before_the_first_step_loads(tmp_path):
    model = _classifier()
    model.compile(optimizers.Lookahead(optimizers.Adam()), loss="mse")
    model.save(tmp_path / "fresh.keras")
    loaded = keras.models.load_model(tmp_path / "fresh.keras")
    bx, by = _batches()[0]
    loaded.train_on_batch(bx, by)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 1


@pytest.mark.tensorflow_only
def test_tf_train_checkpoint_restores_inner_and_slow_state(tmp_path):
    import tensorflow as tf

    def make():
        return optimizers.Lookahead(keras.optimizers.Adam(LR), 4, 0.5)

    gradients = _gradients("float32")
    variables = [keras.Variable(x) for x in _initial("float32")]
    optimizer = make()
    for grads in gradients[:6]:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    path = tf.train.Checkpoint(optimizer=optimizer, v=variables).save(tmp_path / "ckpt")
    for grads in gradients[6:]:
        optimizer.apply([tf.constant(g) for g in grads], variables)

    restored_variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    restored = make()
    restored.build(restored_variables)
    tf.train.Checkpoint(optimizer=restored, v=restored_variables).restore(path)
    assert int(restored.iterations.numpy()) == 6
    for grads in gradients[6:]:
        restored.apply([tf.constant(g) for g in grads], restored_variables)
    for a, b in zip(restored_variables, variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def _compiled_apply(optimizer, variables, jit_compile):
    import tensorflow as tf

    def step(grads):
        optimizer.apply(grads, variables)

    return tf.function(step, jit_compile=jit_compile)


@pytest.mark.tensorflow_only
def test_inside_tf_function_and_xla_equals_eager():
    import tensorflow as tf

    eager = _run(optimizers.Lookahead(optimizers.Momentum(LR), 3, 0.5), "float32")
    for jit in (False, True):
        variables = [keras.Variable(x) for x in _initial("float32")]
        optimizer = optimizers.Lookahead(optimizers.Momentum(LR), 3, 0.5)
        optimizer.build(variables)
        step = _compiled_apply(optimizer, variables, jit)
        for grads in _gradients("float32"):
            step([tf.constant(g) for g in grads])
        for a, b in zip(variables, eager[-1]):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-7)


def test_config_round_trip_nests_the_inner_config():
    optimizer = optimizers.Lookahead(
        keras.optimizers.AdamW(0.003, weight_decay=0.02),
        sync_period=7,
        slow_step_size=0.3,
    )
    config = optimizer.get_config()
    assert config["sync_period"] == 7 and config["slow_step_size"] == 0.3
    assert config["optimizer"]["class_name"] == "AdamW"
    assert config["optimizer"]["config"]["weight_decay"] == 0.02
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == "keras_optnotes>Lookahead"
    restored = keras.optimizers.deserialize(serialized)
    assert isinstance(restored.inner_optimizer, keras.optimizers.AdamW)
    assert restored.get_config() == config


# -- bad arguments -----------------------------------------------------------------------

BAD = [
    ("sync_period", 0),
    ("sync_period", -3),
    ("sync_period", 2.5),
    ("sync_period", "5"),
    ("sync_period", True),
    ("slow_step_size", 0.0),
    ("slow_step_size", -0.5),
    ("slow_step_size", 1.5),
    ("slow_step_size", math.nan),
    ("slow_step_size", "0.5"),
]


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_argument_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        optimizers.Lookahead(optimizers.Momentum(), **{name: value})
    assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    "value",
    ["adam", None, keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)],
    ids=repr,
)
def test_a_non_optimizer_is_rejected(value):
    with pytest.raises(
        ValueError, match="`optimizer`.*keras.optimizers.Optimizer"
    ) as error:
        optimizers.Lookahead(value)
    assert repr(value) in str(error.value)
