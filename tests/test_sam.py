"""SharpnessAwareMinimization (issue 10, item 1) against closed forms in float64 NumPy.

The model for the closed forms is linear regression, y ≈ x W + b with an L2 penalty
λ‖W‖² on W (so `model.losses` takes part in both passes). It is built with
`EinsumDense`: Keras' `matmul` computes float64 in float32 on PyTorch (its
`result_type` maps float64 to float32 off TensorFlow), `einsum` does not. Coefficients
(λ, learning rate, ρ, η) are powers of two and the data float32 values, so that no
argument is rounded on its way in and 1e-12 is the tolerance on every backend; one case
takes η = 0.01, which must reach float64 unrounded too.

Runs on TensorFlow, JAX and PyTorch (tests/conftest.py picks the backend).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_optnotes.training import SharpnessAwareMinimization

HERE = Path(__file__).parent
L2 = 0.125
LEARNING_RATE = 0.25
RHO = 0.5
ETA = 0.0625
TOLERANCE = 1e-12
ONE_EPOCH = {"batch_size": 16, "epochs": 1, "shuffle": False, "verbose": 0}
# Off TensorFlow, Keras itself computes some float64 quantities in float32
# (`keras.backend.result_type` maps float64 to float32 there): the *value* of a
# mean-reduced loss, a division by a count that is not a power of two, batch-norm
# moments. Plain `model.fit` shows the same rounding; tests that meet it use float32's
# tolerance there (still far below what any of the bugs they look for would give).
KERAS_ROUNDING = TOLERANCE if keras.backend.backend() == "tensorflow" else 1e-6


@pytest.fixture(scope="module", autouse=True)
def float64():
    # The global dtype policy too: a test that set it explicitly (e.g. back to
    # "float32" after mixed precision) would otherwise keep the losses in float32.
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous)
    keras.config.set_dtype_policy(previous_policy)


def regression_data(seed):
    """32 rows: x (3 columns) and y of float32 values in float64, sample weights in
    quarters from 0 to 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 3)).astype("float32").astype("float64")
    y = rng.normal(size=(32, 1)).astype("float32").astype("float64")
    sample_weight = rng.integers(0, 5, size=32) / 4.0
    return x, y, sample_weight


@pytest.fixture(scope="module")
def data():
    return regression_data(0)


def linear_model(seed=0, l2=L2):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.EinsumDense(
                "ab,bc->ac",
                output_shape=1,
                bias_axes="c",
                kernel_initializer="glorot_uniform",
                bias_initializer=keras.initializers.RandomNormal(seed=seed),
                kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
            ),
        ]
    )


def compiled(model, jit_compile="auto", **sam_kwargs):
    sam = SharpnessAwareMinimization(model, **sam_kwargs)
    sam.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss="mse",
        jit_compile=jit_compile,
    )
    return sam


# ---- the float64 NumPy reference ---------------------------------------------------


def linear_loss_and_gradient(weights, x, y, sample_weight, l2=L2):
    """Keras' mse with sample weights ('sum_over_batch_size': Σ sᵢ rᵢ² / n) + λ‖W‖²."""
    kernel, bias = weights
    residual = x @ kernel + bias - y
    s = np.ones((len(x), 1)) if sample_weight is None else sample_weight[:, None]
    n = len(x)
    loss = np.sum(s * residual**2) / n + l2 * np.sum(kernel**2)
    return loss, [
        2 / n * x.T @ (s * residual) + 2 * l2 * kernel,
        2 / n * np.sum(s * residual, 0),
    ]


def reference_perturbation(gradients, weights, rho, adaptive, eta):
    if adaptive:
        scales = [np.abs(w) + eta for w in weights]
        norm = np.sqrt(sum(np.sum((t * g) ** 2) for t, g in zip(scales, gradients)))
        return [rho * t**2 * g / norm for t, g in zip(scales, gradients)]
    norm = np.sqrt(sum(np.sum(g**2) for g in gradients))
    return [rho * g / norm for g in gradients]


def reference_gradients(
    weights, x, y, sample_weight, rho=RHO, adaptive=False, eta=ETA, splits=1, l2=L2
):
    """One SAM step's g and g_s, the unperturbed and the perturbed loss: each averaged
    over the splits by their shares."""
    n = len(x)
    bounds = [(i * n) // splits for i in range(splits + 1)]
    g = [np.zeros_like(w) for w in weights]
    g_s = [np.zeros_like(w) for w in weights]
    loss = perturbed_loss = 0.0
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop == start:
            continue
        part = slice(start, stop)
        part_weight = None if sample_weight is None else sample_weight[part]
        share = (stop - start) / n
        part_loss, gradient = linear_loss_and_gradient(
            weights, x[part], y[part], part_weight, l2
        )
        epsilon = reference_perturbation(gradient, weights, rho, adaptive, eta)
        at = [w + e for w, e in zip(weights, epsilon)]
        part_perturbed_loss, perturbed = linear_loss_and_gradient(
            at, x[part], y[part], part_weight, l2
        )
        g = [t + share * a for t, a in zip(g, gradient)]
        g_s = [t + share * a for t, a in zip(g_s, perturbed)]
        loss += share * part_loss
        perturbed_loss += share * part_perturbed_loss
    return g, g_s, loss, perturbed_loss


def reference_step(weights, x, y, sample_weight, **options):
    """One SAM step (options as `reference_gradients`'): returns the new weights, the
    unperturbed and the perturbed loss."""
    _, perturbed, loss, perturbed_loss = reference_gradients(
        weights, x, y, sample_weight, **options
    )
    return (
        [w - LEARNING_RATE * g for w, g in zip(weights, perturbed)],
        loss,
        perturbed_loss,
    )


def run_script(script, *arguments):
    """Runs a Python script in a fresh process (same backend); its last stdout line
    parsed as JSON."""
    run = subprocess.run(
        [sys.executable, str(script), *arguments],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def assert_close(actual, expected, tolerance=TOLERANCE):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(a), e, rtol=tolerance, atol=tolerance)


# ---- closed forms ------------------------------------------------------------------

CASES = {
    "sam": {},
    "sam_without_jit": {"jit_compile": False},  # TF: a plain tf.function
    "asam": {"adaptive": True, "eta": ETA},
    # Not a float32 value: converted to float64 exactly (TensorFlow's cast of a Python
    # float went through float32, 2.3e-8 relative off the reference).
    "asam_eta_0.01": {"adaptive": True, "eta": 0.01},
    "sample_weight": {"sample_weight": True},
    "splits": {"num_batch_splits": 4},
    "asam_splits_weighted": {
        "adaptive": True,
        "eta": ETA,
        "num_batch_splits": 4,
        "sample_weight": True,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_steps_equal_closed_form(data, case):
    """Two steps on batches of 16: weights to 1e-12; the reported loss is the
    unperturbed one (and differs from the perturbed one by far more than the tolerance)."""
    options = dict(CASES[case])
    weighted = options.pop("sample_weight", False)
    x, y, sample_weight = data
    sample_weight = sample_weight if weighted else None
    model = linear_model()
    weights = model.get_weights()
    sam = compiled(model, rho=RHO, **options)
    for step in range(2):
        part = slice(16 * step, 16 * (step + 1))
        part_weight = None if sample_weight is None else sample_weight[part]
        logs = sam.train_on_batch(
            x[part], y[part], sample_weight=part_weight, return_dict=True
        )
        weights, loss, perturbed_loss = reference_step(
            weights,
            x[part],
            y[part],
            part_weight,
            adaptive=options.get("adaptive", False),
            eta=options.get("eta", ETA),
            splits=options.get("num_batch_splits", 1),
        )
        assert_close(model.get_weights(), weights)
        np.testing.assert_allclose(logs["loss"], loss, rtol=KERAS_ROUNDING)
        assert abs(perturbed_loss - loss) > 1e-3 * loss


def test_fit_with_a_batch_that_splits_do_not_divide(data):
    """fit over 36 samples in batches of 16 (16, 16, 4) with k = 5: near-equal parts
    weighted by their share, and a last batch smaller than k in one-sample parts
    (on TensorFlow the last batch has a run-time shape, the masked path)."""
    x, y, _ = data
    rng = np.random.default_rng(1)
    x = np.concatenate([x, rng.normal(size=(4, 3)).astype("float32")])
    y = np.concatenate([y, rng.normal(size=(4, 1)).astype("float32")])
    model = linear_model()
    weights = model.get_weights()
    sam = compiled(model, rho=RHO, num_batch_splits=5)
    sam.fit(x, y, **ONE_EPOCH)
    for start in (0, 16, 32):
        part = slice(start, start + 16)
        weights, _, _ = reference_step(weights, x[part], y[part], None, splits=5)
    assert_close(model.get_weights(), weights, KERAS_ROUNDING)


def test_zero_gradient_gives_no_perturbation(data):
    """At the exact minimum (zero weights, zero targets, no penalty) g = 0: ε = 0, the
    weights stay at 0, nothing is NaN — for SAM and ASAM."""
    x, _, _ = data
    for adaptive in (False, True):
        model = linear_model(l2=0.0)
        model.set_weights([np.zeros((3, 1)), np.zeros(1)])
        sam = compiled(model, rho=RHO, adaptive=adaptive)
        logs = sam.train_on_batch(x[:16], np.zeros((16, 1)), return_dict=True)
        assert logs["loss"] == 0.0
        for w in model.get_weights():
            assert np.all(w == 0.0)


# ---- state: batch normalization, dropout -------------------------------------------


@pytest.mark.parametrize("splits", [None, 2])
def test_batch_norm_moving_statistics_from_the_unperturbed_pass_only(data, splits):
    """h = x W₁ + b₁ feeds BatchNormalization(momentum=0.75): after one step the moving
    statistics equal one Keras update per split (moving ← m·moving + (1 − m)·batch,
    the biased batch variance) from h at the *unperturbed* weights."""
    x, y, _ = data
    x, y = x[:16], y[:16]
    momentum = 0.75
    keras.utils.set_random_seed(3)
    first = keras.layers.EinsumDense("ab,bc->ac", output_shape=2, bias_axes="c")
    norm = keras.layers.BatchNormalization(momentum=momentum)
    model = keras.Sequential([keras.Input((3,)), first, norm, keras.layers.Dense(1)])
    kernel, bias = first.get_weights()
    sam = compiled(model, rho=RHO, num_batch_splits=splits)
    sam.train_on_batch(x, y)
    mean, variance = np.zeros(2), np.ones(2)
    for part in np.split(x, splits or 1):
        h = part @ kernel + bias
        mean = momentum * mean + (1 - momentum) * h.mean(0)
        variance = momentum * variance + (1 - momentum) * h.var(0)  # ddof=0
    assert_close(
        [norm.moving_mean, norm.moving_variance], [mean, variance], KERAS_ROUNDING
    )
    assert not np.allclose(first.get_weights()[0], kernel)  # the step did move W₁


def test_dropout_mask_is_the_same_in_both_passes(data):
    """Dropout on the inputs of the linear model: the step equals the closed form with
    one mask in both passes, and the seed generator advanced by exactly one draw."""
    x, y, _ = data
    x, y = x[:16], y[:16]
    keras.utils.set_random_seed(5)
    dropout = keras.layers.Dropout(0.5, seed=7)
    linear = linear_model()
    model = keras.Sequential([keras.Input((3,)), dropout, linear])
    weights = linear.get_weights()
    state = dropout.seed_generator.state
    before = keras.ops.convert_to_numpy(state.value).copy()
    sam = compiled(model, rho=RHO)
    sam.train_on_batch(x, y)
    after = keras.ops.convert_to_numpy(state.value).copy()
    state.assign(before)
    mask = keras.ops.convert_to_numpy(dropout(np.ones_like(x), training=True))
    assert np.array_equal(keras.ops.convert_to_numpy(state.value), after)
    assert 0 < np.count_nonzero(mask) < mask.size
    expected, _, _ = reference_step(weights, x * mask, y, None)
    assert_close(linear.get_weights(), expected)


# ---- the model around it -----------------------------------------------------------


def test_predict_and_evaluate_are_the_inner_models(data):
    x, y, _ = data
    model = linear_model()
    sam = compiled(model, rho=RHO)
    sam.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(
        sam.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    model.compile(loss="mse")
    assert sam.evaluate(x, y, verbose=0) == pytest.approx(
        model.evaluate(x, y, verbose=0), rel=1e-12
    )


def test_config_round_trip():
    sam = SharpnessAwareMinimization(
        linear_model(),
        rho=0.25,
        adaptive=True,
        eta=0.5,
        num_batch_splits=2,
        name="sharp",
    )
    config = sam.get_config()
    assert {
        k: config[k] for k in ("rho", "adaptive", "eta", "num_batch_splits", "name")
    } == {
        "rho": 0.25,
        "adaptive": True,
        "eta": 0.5,
        "num_batch_splits": 2,
        "name": "sharp",
    }
    assert config["model"]["class_name"] == "Sequential"
    clone = SharpnessAwareMinimization.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(SharpnessAwareMinimization) == (
        "keras_optnotes>SharpnessAwareMinimization"
    )


@pytest.mark.slow
def test_save_load_in_a_fresh_process_continues_identically(data, tmp_path):
    """Train 2 steps with Adam, save to .keras; a fresh process (importing only the
    package) loads it and trains 2 more steps; the weights and the optimizer's state
    equal those of the run that was never interrupted."""
    x, y, sample_weight = data
    model = linear_model()
    sam = SharpnessAwareMinimization(model, rho=RHO, adaptive=True, num_batch_splits=2)
    sam.compile(optimizer=keras.optimizers.Adam(0.0625), loss="mse")
    sam.fit(x, y, sample_weight=sample_weight, **ONE_EPOCH)
    path = tmp_path / "sam.keras"
    sam.save(path)
    np.savez(tmp_path / "data.npz", x=x, y=y, sample_weight=sample_weight)
    sam.fit(x, y, sample_weight=sample_weight, **ONE_EPOCH)
    resumed = run_script(HERE / "processes" / "sam_resume.py", str(tmp_path))
    assert resumed["class_name"] == "SharpnessAwareMinimization"
    assert resumed["config"] == {
        "rho": RHO,
        "adaptive": True,
        "eta": 0.01,
        "num_batch_splits": 2,
        "interval": 1,
        "looksam_alpha": None,
    }
    resumed_state = np.load(tmp_path / "resumed.npz")
    uninterrupted = [keras.ops.convert_to_numpy(v) for v in sam.optimizer.variables]
    assert_close(
        [resumed_state[f"w{i}"] for i in range(len(model.weights))],
        model.get_weights(),
        0.0,
    )
    assert_close(
        [resumed_state[f"o{i}"] for i in range(len(uninterrupted))], uninterrupted, 0.0
    )


# ---- mixed precision ---------------------------------------------------------------


@pytest.fixture
def mixed_float16():
    previous_floatx = keras.config.floatx()
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.config.set_floatx(previous_floatx)


def small_network(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )


def test_mixed_float16_steps_match_float32(data, mixed_float16):
    """Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer; with a
    loss scale of 2⁸ both passes are scaled and unscaled: five steps stay within
    float16 rounding of the same steps in float32, the loss is finite and falls, and
    no step was skipped (the scale is unchanged)."""
    x, y, _ = data
    x, y = x.astype("float32"), y.astype("float32")
    mixed = SharpnessAwareMinimization(small_network(11), rho=0.05)
    mixed.compile(optimizer="sgd", loss="mse")
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
    # A scale that cannot overflow float16 here, so that no step is skipped (Keras' JAX
    # path computes this loss in float16) and the run can be compared step by step.
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.05), initial_scale=2.0**8
    )
    mixed.compile(optimizer=optimizer, loss="mse")
    history = mixed.fit(x, y, batch_size=32, epochs=5, verbose=0).history["loss"]
    assert float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) == 2.0**8
    keras.mixed_precision.set_global_policy("float32")
    plain = SharpnessAwareMinimization(small_network(11), rho=0.05)
    plain.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    plain.fit(x, y, batch_size=32, epochs=5, verbose=0)
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    for a, b in zip(mixed.model.get_weights(), plain.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-3)


def test_loss_scale_overflow_skips_the_step(data, mixed_float16):
    """A loss scale so large that the float16 backward pass overflows: no NaN reaches
    the weights; the LossScaleOptimizer skips the step and halves its scale."""
    x, y, _ = data
    model = small_network(12)
    before = model.get_weights()
    sam = SharpnessAwareMinimization(model, rho=0.05)
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=2.0**60
    )
    sam.compile(optimizer=optimizer, loss="mse")
    sam.train_on_batch(x.astype("float32"), y.astype("float32"))
    assert float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) == 2.0**59
    for a, b, variable in zip(model.get_weights(), before, model.weights):
        if variable.trainable:
            np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


# ---- tf.distribute -----------------------------------------------------------------


@pytest.mark.tensorflow_only
@pytest.mark.slow
def test_mirrored_strategy_perturbs_each_replica_with_its_shard(data):
    """2 logical CPUs, a global batch of 16: the step equals w − η·½ Σᵣ ∇Lᵣ(w + εᵣ) with
    εᵣ from replica r's own 8 samples, and not the step perturbed by the global
    gradient."""
    result = run_script(HERE / "distributed_sam.py")
    x, y, _ = data
    x, y = x[:16], y[:16]
    weights = [np.asarray(w) for w in result["initial"]]
    shards = []
    for part in (slice(0, 8), slice(8, 16)):
        shards.append(reference_gradients(weights, x[part], y[part], None, l2=0.0)[1])
    per_replica = [w - LEARNING_RATE * (a + b) / 2 for w, a, b in zip(weights, *shards)]
    global_, _, _ = reference_step(weights, x, y, None, l2=0.0)
    assert result["replicas"] == 2
    trained = [np.asarray(w) for w in result["trained"]]
    assert_close(trained, per_replica)
    assert max(np.max(np.abs(a - b)) for a, b in zip(trained, global_)) > 1e-6


# ---- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": -0.1}, "rho"),
        ({"rho": float("inf")}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"rho": "0.05"}, "rho"),
        ({"eta": -0.01}, "eta"),
        ({"eta": float("inf")}, "eta"),
        ({"adaptive": "yes"}, "adaptive"),
        ({"num_batch_splits": 0}, "num_batch_splits"),
        ({"num_batch_splits": 2.5}, "num_batch_splits"),
        ({"num_batch_splits": True}, "num_batch_splits"),
        ({"interval": 0}, "interval"),
        ({"interval": -2}, "interval"),
        ({"interval": 2.5}, "interval"),
        ({"interval": True}, "interval"),
        ({"interval": "5"}, "interval"),
        ({"interval": None}, "interval"),
        ({"looksam_alpha": -0.1}, "looksam_alpha"),
        ({"looksam_alpha": float("inf")}, "looksam_alpha"),
        ({"looksam_alpha": float("nan")}, "looksam_alpha"),
        ({"looksam_alpha": "0.5"}, "looksam_alpha"),
        ({"looksam_alpha": True}, "looksam_alpha"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, name):
    [value] = kwargs.values()
    with pytest.raises(ValueError) as error:
        SharpnessAwareMinimization(linear_model(), **kwargs)
    assert f"`{name}`" in str(error.value)
    assert f"Received: {name}={value!r}" in str(error.value)


def test_a_non_model_is_refused():
    layer = keras.layers.Dense(1)
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model.*Dense"):
        SharpnessAwareMinimization(layer)
