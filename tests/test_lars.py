"""LARS against the float64 NumPy reference of You et al. 2017, Algorithm 1.

Runs on every backend; the tests of the XLA-fused path are TensorFlow-only.
"""

import math

import keras
import numpy as np
import pytest
import reference_rules

from keras_optnotes import optimizers

BACKEND = keras.backend.backend()
LR32 = float(np.float32(0.1))  # Keras keeps the learning rate in a float32 variable
# A kernel (adapted), a bias (rank 1: plain momentum), a 3-D kernel (adapted), a
# kernel that starts at zero (ratio 1 until it moves), a kernel excluded by name.
SHAPES = [(3, 5), (7,), (2, 3, 4), (3, 2), (4, 2)]
NAMES = ["kernel", "bias", "conv", "zero_start", "excluded_kernel"]
STEPS = 16
KWARGS = {
    "momentum": 0.8,
    "weight_decay": 0.01,
    "trust_coefficient": 0.02,
    "epsilon": 1e-6,
    "exclude_from_layer_adaptation": ["excluded"],
}
JIT = [True, False] if BACKEND == "tensorflow" else [True]


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=s) for s in SHAPES]
    initial[3] = np.zeros(SHAPES[3])
    gradients = [
        [rng.normal(size=s) * (1 + t / 10) for s in SHAPES] for t in range(STEPS)
    ]
    gradients[4][0] = np.zeros(SHAPES[0])  # ‖g‖ = 0: ratio 1, d = λ w
    return [x.astype(dtype) for x in initial], [
        [g.astype(dtype) for g in step] for step in gradients
    ]


def _trajectory(dtype, jit_compile):
    initial, gradients = _problem(dtype)
    variables = [keras.Variable(x, dtype=dtype, name=n) for x, n in zip(initial, NAMES)]
    optimizer = optimizers.LARS(0.1, jit_compile=jit_compile, **KWARGS)
    kwargs = {k: v for k, v in KWARGS.items() if k != "exclude_from_layer_adaptation"}
    references = [
        reference_rules.LARS(
            LR32, s, adapt=len(s) > 1 and "excluded" not in n, **kwargs
        )
        for s, n in zip(SHAPES, NAMES)
    ]
    expected = [x.astype(np.float64) for x in initial]
    worst = 0.0
    for t, grads in enumerate(gradients, start=1):
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        expected = [
            r.step(w, g.astype(np.float64), t)
            for r, w, g in zip(references, expected, grads)
        ]
        for v, e in zip(variables, expected):
            actual = keras.ops.convert_to_numpy(v).astype(np.float64)
            worst = max(worst, np.linalg.norm(actual - e) / np.linalg.norm(e))
    return worst, [keras.ops.convert_to_numpy(v) for v in variables]


@pytest.mark.parametrize("jit_compile", JIT)
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_trajectory_matches_float64_reference(dtype, tolerance, jit_compile):
    worst, _ = _trajectory(dtype, jit_compile)
    assert worst <= tolerance, f"worst relative error {worst:.2e}"


@pytest.mark.tensorflow_only
def test_fused_and_plain_paths_agree():
    _, fused = _trajectory("float32", True)
    _, plain = _trajectory("float32", False)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_one_step_by_hand():
    # w = [3, 4] as a 1×2 kernel (‖w‖ = 5), g = [0, 1] (‖g‖ = 1), λ = 0.1, tc = 0.5:
    # ratio = 0.5·5 / (1 + 0.5 + ε), d = g + λ w = [0.3, 1.4], v = η·ratio·d.
    variable = keras.Variable([[3.0, 4.0]], dtype="float64")
    optimizer = optimizers.LARS(0.1, weight_decay=0.1, trust_coefficient=0.5)
    optimizer.apply([keras.ops.convert_to_tensor([[0.0, 1.0]], "float64")], [variable])
    ratio = 2.5 / (1.5 + 1e-8)
    expected = np.array([[3.0, 4.0]]) - LR32 * ratio * np.array([[0.3, 1.4]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(variable), expected, rtol=1e-15
    )


def test_weight_decay_is_coupled_not_keras_decoupled_decay():
    optimizer = optimizers.LARS(weight_decay=0.5)
    assert optimizer.weight_decay is None  # Keras' base applies nothing
    with pytest.raises(ValueError, match="`weight_decay`.*-1.0"):
        optimizer.coupled_weight_decay = -1.0
    assert optimizer.get_config()["weight_decay"] == 0.5
    # A bias (rank 1) gets neither ratio nor decay: the plain momentum step.
    bias = keras.Variable([1.0, 2.0], dtype="float64")
    optimizer.apply([keras.ops.convert_to_tensor([0.5, 0.5], "float64")], [bias])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bias),
        [1.0 - LR32 * 0.5, 2.0 - LR32 * 0.5],
        rtol=1e-15,
    )


def test_adapted_variables_by_rank_and_name():
    optimizer = optimizers.LARS(exclude_from_layer_adaptation=["embedding"])
    dense = keras.layers.Dense(3, name="dense")
    dense.build((None, 2))
    norm = keras.layers.LayerNormalization(name="norm")
    norm.build((None, 3))
    embedding = keras.layers.Embedding(5, 2, name="embedding")
    embedding.build((None,))
    assert optimizer.adapts(dense.kernel)
    assert not optimizer.adapts(dense.bias)
    assert not optimizer.adapts(norm.gamma)
    assert not optimizer.adapts(embedding.embeddings)


def test_config_round_trip_and_registered_name():
    optimizer = optimizers.LARS(0.2, clipnorm=1.5, jit_compile=False, **KWARGS)
    config = optimizer.get_config()
    assert config["weight_decay"] == 0.01 and config["clipnorm"] == 1.5
    assert tuple(config["exclude_from_layer_adaptation"]) == ("excluded",)
    assert config["jit_compile"] is False
    assert type(optimizer).from_config(config).get_config() == config
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == "keras_optnotes>LARS"
    restored = keras.optimizers.deserialize(serialized)
    assert type(restored) is optimizers.LARS
    assert restored.get_config() == config


# -- in model.fit ------------------------------------------------------------------


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3).astype("float32")[:, None]
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )


def test_fit_with_a_warm_up_schedule_lowers_the_loss():
    x, y = _data()
    model = _model()
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, 40, warmup_target=1.0, warmup_steps=8
    )
    model.compile(optimizers.LARS(schedule, trust_coefficient=0.02), loss="mse")
    losses = model.fit(x, y, batch_size=16, epochs=10, verbose=0).history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_fit_under_mixed_precision_is_loss_scaled_and_finite():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        x, y = _data()
        model = _model()
        model.compile(optimizers.LARS(0.1, trust_coefficient=0.1), loss="mse")
        losses = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_saved_model_resumes_exactly(tmp_path):
    x, y = _data()
    model = _model()
    model.compile(
        optimizers.LARS(1.0, weight_decay=1e-3, trust_coefficient=0.02), "mse"
    )
    for i in range(3):
        model.train_on_batch(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optimizers.LARS
    model.train_on_batch(x[48:], y[48:])
    loaded.train_on_batch(x[48:], y[48:])
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- bad arguments -------------------------------------------------------------------

BAD = [
    ("trust_coefficient", 0.0),
    ("trust_coefficient", -0.001),
    ("trust_coefficient", math.nan),
    ("momentum", -0.1),
    ("momentum", 1.0),
    ("momentum", "0.9"),
    ("weight_decay", -1e-4),
    ("weight_decay", math.inf),
    ("epsilon", 0.0),
    ("learning_rate", 0.0),
    ("exclude_from_layer_adaptation", "bias"),
    ("exclude_from_layer_adaptation", [1]),
    ("exclude_from_layer_adaptation", 5),
    ("jit_compile", "yes"),
]


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_argument_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        optimizers.LARS(**{name: value})
    assert repr(value) in str(error.value)
