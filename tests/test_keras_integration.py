"""Everything Keras users combine with an optimizer, for every rule (issue 3, items 1–3).

The base keywords (schedules, callables, clipping, decoupled weight decay, EMA, gradient
accumulation, loss scaling) are checked against the float64 NumPy references of
`reference_rules` with the keyword's own transformation written out here; mixed
precision and sparse gradients through `model.fit` and custom steps.
"""

import math

import keras
import numpy as np
import pytest
import reference_rules

from keras_optnotes import optimizers

RULES = optimizers.list_rules()
LR = 0.05
LR32 = float(np.float32(LR))
STEPS = 6
SHAPES = {"kernel": (3, 2), "bias": (2,)}


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    return [
        {k: rng.normal(size=s) * 2.0 for k, s in SHAPES.items()} for _ in range(STEPS)
    ]


def _run(rule, keywords, grads, learning_rate=LR, exclude=None):
    rng = np.random.default_rng(42)
    start = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    variables = {
        k: keras.Variable(v, dtype="float64", name=k) for k, v in start.items()
    }
    optimizer = optimizers.get(rule, learning_rate=learning_rate, **keywords)
    if exclude:
        optimizer.exclude_from_weight_decay(var_names=exclude)
    for g in grads:
        optimizer.apply(
            [keras.ops.convert_to_tensor(g[k]) for k in SHAPES],
            [variables[k] for k in SHAPES],
        )
    return start, {k: v.numpy() for k, v in variables.items()}, optimizer


def _reference(rule, start, grads, transform=None, lrs=None, decay=None, exclude=()):
    """The rule's reference with the keyword's effect: transformed gradients, a learning
    rate per step, decoupled decay θ ← θ − ηλθ before the step (not on `exclude`)."""
    refs = {k: reference_rules.RULES[rule](LR32, s) for k, s in SHAPES.items()}
    theta = {k: v.copy() for k, v in start.items()}
    for t, g in enumerate(grads, start=1):
        g = transform(g) if transform else g
        for k in SHAPES:
            refs[k].lr = lrs[t - 1] if lrs else LR32
            if decay and k not in exclude:
                theta[k] = theta[k] - refs[k].lr * decay * theta[k]
            theta[k] = refs[k].step(theta[k], g[k], t)
    return theta


# Keras' own clipping and EMA code passes float64 values through float32 on the torch
# backend (Keras 3.15's `ops.maximum` returns float32 for float64 tensors there): up to
# 1e-8 relative, measured. Our rules themselves hold 1e-12 on every backend.
KERAS_FLOAT64 = 1e-7 if keras.backend.backend() == "torch" else 1e-12


def _assert_close(actual, expected, rtol=1e-12):
    for k in SHAPES:
        np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=1e-12)


def _clip_each_by_norm(c):
    return lambda g: {k: v * min(1.0, c / np.linalg.norm(v)) for k, v in g.items()}


def _clip_by_global_norm(c):
    def clip(g):
        norm = math.sqrt(sum(np.sum(v**2) for v in g.values()))
        return {k: v * min(1.0, c / norm) for k, v in g.items()}

    return clip


@pytest.mark.parametrize("rule", RULES)
def test_clipping_keywords(rule):
    grads = _gradients()
    cases = [
        ({"clipnorm": 0.5}, _clip_each_by_norm(0.5)),
        ({"global_clipnorm": 0.7}, _clip_by_global_norm(0.7)),
        (
            {"clipvalue": 0.3},
            lambda g: {k: np.clip(v, -0.3, 0.3) for k, v in g.items()},
        ),
    ]
    for keywords, transform in cases:
        start, actual, _ = _run(rule, keywords, grads)
        _assert_close(
            actual, _reference(rule, start, grads, transform=transform), KERAS_FLOAT64
        )


@pytest.mark.parametrize("rule", RULES)
def test_schedule_callable_and_loss_scale(rule):
    grads = _gradients(1)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        LR, decay_steps=2, decay_rate=0.5
    )
    lrs = [float(np.float32(LR * 0.5 ** (t / 2))) for t in range(STEPS)]
    start, actual, _ = _run(rule, {}, grads, learning_rate=schedule)
    # The schedule is computed in float32; allow its rounding.
    _assert_close(actual, _reference(rule, start, grads, lrs=lrs), rtol=1e-6)

    calls = []

    def rate():
        calls.append(1)
        return 0.02 * len(calls)

    start, actual, optimizer = _run(rule, {}, grads, learning_rate=rate)
    # A callable's Python number reaches float64 variables exactly.
    lrs = [0.02 * t for t in range(1, STEPS + 1)]
    _assert_close(actual, _reference(rule, start, grads, lrs=lrs))

    scale = 128.0
    scaled = [{k: v * scale for k, v in g.items()} for g in grads]
    start, actual, optimizer = _run(rule, {"loss_scale_factor": scale}, scaled)
    _assert_close(actual, _reference(rule, start, grads))
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == STEPS
    assert keras.ops.convert_to_numpy(optimizer.scale_loss(2.0)) == 2.0 * scale


@pytest.mark.parametrize("rule", RULES)
def test_decoupled_weight_decay_with_exclusions(rule):
    grads = _gradients(2)
    start, actual, _ = _run(rule, {"weight_decay": 0.1}, grads, exclude=["bias"])
    _assert_close(actual, _reference(rule, start, grads, decay=0.1, exclude=("bias",)))


@pytest.mark.parametrize("rule", RULES)
def test_gradient_accumulation_is_one_step_on_the_mean_gradient(rule):
    grads = _gradients(3)  # 6 micro-batches, 3 per step -> 2 steps
    start, actual, optimizer = _run(rule, {"gradient_accumulation_steps": 3}, grads)
    means = [
        {k: np.mean([g[k] for g in grads[i : i + 3]], axis=0) for k in SHAPES}
        for i in (0, 3)
    ]
    _assert_close(actual, _reference(rule, start, means))
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2


@pytest.mark.parametrize("rule", RULES)
def test_ema_with_overwrite_frequency(rule):
    grads = _gradients(4)
    momentum, every = 0.8, 3
    start, actual, optimizer = _run(
        rule,
        {"use_ema": True, "ema_momentum": momentum, "ema_overwrite_frequency": every},
        grads,
    )
    # Reference: after each step the average moves towards the new weights (the
    # first step copies them); every `every` steps the weights become the average.
    refs = {k: reference_rules.RULES[rule](LR32, s) for k, s in SHAPES.items()}
    theta = {k: v.copy() for k, v in start.items()}
    average = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, g in enumerate(grads, start=1):
        for k in SHAPES:
            theta[k] = refs[k].step(theta[k], g[k], t)
            m = 0.0 if t == 1 else momentum
            average[k] = m * average[k] + (1 - m) * theta[k]
            if t % every == 0:
                theta[k] = average[k].copy()
    _assert_close(actual, theta, KERAS_FLOAT64)
    stored = optimizer._model_variables_moving_average
    _assert_close(
        {k: v.numpy() for k, v in zip(SHAPES, stored)}, average, KERAS_FLOAT64
    )


# -- EMA weights swapped in for evaluation -----------------------------------------


def _regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3).astype("float32")[:, None]
    return x, y


def test_swap_ema_weights_callback_evaluates_with_the_averages():
    x, y = _regression()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9), loss="mse"
    )
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        validation_data=(x, y),
        callbacks=[keras.callbacks.SwapEMAWeights()],
    )
    averages = [v.numpy() for v in model.optimizer._model_variables_moving_average]
    kernel, bias = averages
    expected_val_loss = np.mean((x @ kernel + bias - y) ** 2)
    assert history.history["val_loss"][-1] == pytest.approx(expected_val_loss, rel=1e-4)
    # The training loss was measured on the raw weights, which differ from the averages.
    assert history.history["loss"][-1] != pytest.approx(expected_val_loss, rel=1e-3)
    # At the end of fit Keras leaves the averages in the model.
    for a, b in zip(model.get_weights(), averages):
        np.testing.assert_array_equal(a, b)


# -- mixed precision ----------------------------------------------------------------

# Relative error allowed in the update of all weights together, in units u of roundoff
# of the compute dtype (2^-11 for float16, 2^-8 for bfloat16). Forward and backward
# passes in that dtype move the first updates by at most 3.5 u in float16 and 8.9 u in
# bfloat16 (measured on TensorFlow, JAX and PyTorch; PyTorch's bfloat16 is the
# coarsest); the weights and slots stay float32.
MIXED_TOLERANCE = {"mixed_float16": 8 * 2.0**-11, "mixed_bfloat16": 16 * 2.0**-8}
MIXED_STEPS = (1, 3)  # compared after the first step and after the third


def _mixed_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = 0.5 * np.tanh(x @ np.array([1.0, -2.0, 0.5, 0.3])) + 0.1
    return x, y.astype("float32")[:, None]


def _mixed_run(rule):
    """The weight updates θ_k − θ_0 after the steps of MIXED_STEPS under the policy in
    force, the model and the rule (inside the model's optimizer)."""
    x, y = _mixed_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, "tanh"),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    start = model.get_weights()
    optimizer = optimizers.get(rule, learning_rate=0.5 if rule == "Adadelta" else 0.01)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    updates, done = [], 0
    for steps in MIXED_STEPS:
        batch = slice(16 * done, 16 * steps)
        model.fit(x[batch], y[batch], batch_size=16, shuffle=False, verbose=0)
        done = steps
        updates.append([w - w0 for w, w0 in zip(model.get_weights(), start)])
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == done  # no skip
    return updates, model, optimizer


@pytest.fixture(scope="module")
def float32_updates():
    return {rule: _mixed_run(rule)[0] for rule in RULES}


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_first_steps_equal_float32_and_save(
    float32_updates, policy, tmp_path
):
    tolerance = MIXED_TOLERANCE[policy]
    for rule in RULES:
        updates, model, optimizer = _mixed_run(rule)
        assert model.layers[0].compute_dtype == policy.split("_")[1]
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            assert model.optimizer.inner_optimizer is optimizer
        for steps, mixed, full in zip(MIXED_STEPS, updates, float32_updates[rule]):
            mixed, full = (
                np.concatenate([u.ravel() for u in x]) for x in (mixed, full)
            )
            error = np.linalg.norm(mixed - full) / np.linalg.norm(full)
            assert error < tolerance, (rule, steps, error)
        path = tmp_path / f"{rule}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        inner = getattr(loaded.optimizer, "inner_optimizer", loaded.optimizer)
        assert type(inner) is type(optimizer)
        for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- sparse gradients ----------------------------------------------------------------


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("rule", RULES)
def test_embedding_sparse_gradients_equal_dense_ones(rule):
    """An `Embedding` gives `tf.IndexedSlices` gradients (with repeated rows); the
    weights must follow the same path as with the same gradients made dense."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.integers(0, 10, size=(8, 5)))  # repeats inside a batch
    targets = tf.constant(rng.normal(size=(8, 1)).astype("float32"))

    def model():
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((5,), dtype="int64"),
                keras.layers.Embedding(10, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(1),
            ]
        )

    sparse_model, dense_model = model(), model()
    kwargs = {"learning_rate": 0.5} if rule == "Adadelta" else {"learning_rate": 0.05}
    sparse_opt = optimizers.get(rule, **kwargs)
    dense_opt = optimizers.get(rule, **kwargs)
    saw_sparse = False
    for _ in range(4):
        grads = {}
        for name, m in (("sparse", sparse_model), ("dense", dense_model)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((m(tokens) - targets) ** 2)
            grads[name] = tape.gradient(loss, m.trainable_variables)
        saw_sparse |= isinstance(grads["sparse"][0], tf.IndexedSlices)
        sparse_opt.apply(grads["sparse"], sparse_model.trainable_variables)
        dense_opt.apply(
            [tf.convert_to_tensor(g) for g in grads["dense"]],
            dense_model.trainable_variables,
        )
    assert saw_sparse
    for a, b in zip(sparse_model.get_weights(), dense_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow_only
def test_gradient_descent_updates_embeddings_sparsely():
    """GradientDescent writes only the rows a sparse gradient names (a scatter)."""
    import tensorflow as tf

    table = keras.Variable(np.ones((6, 2)), dtype="float32")
    optimizer = optimizers.GradientDescent(0.1)
    gradient = tf.IndexedSlices(
        tf.ones((3, 2)), tf.constant([0, 4, 4]), tf.constant([6, 2])
    )
    optimizer.apply([gradient], [table])
    np.testing.assert_allclose(table.numpy()[:, 0], [0.9, 1, 1, 1, 0.8, 1], rtol=1e-6)
    (function,) = optimizer._fused.functions.values()
    graph = function.get_concrete_function([gradient], tf.constant(0.1)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "ResourceScatterSub" in kinds and "AssignSubVariableOp" not in kinds
