"""SAM every k-th step (`interval`) and LookSAM (`looksam_alpha`), issue 20, against
a float64 NumPy implementation of their equations written here:

- at the optimizer's iterations t with t mod k = 0, the SAM step: per split, g from
  the unperturbed pass, ε = ρ g/‖g‖ (ASAM: ρ T² g/‖T g‖, T = |w| + η), g_s = ∇L(w + ε);
  g and g_s averaged over the splits by their shares; the update uses g_s, and LookSAM
  keeps g_v = g_s − (g·g_s/‖g‖²) g;
- at the other steps, one pass on the whole batch: the update uses g, or LookSAM's
  g + α (‖g‖/‖g_v‖) g_v.

The model is test_sam.py's float64 linear regression with an L2 penalty; its loss and
gradient and the SAM step's g and g_s come from there. Runs on TensorFlow, JAX and
PyTorch.
"""

import keras
import numpy as np
import pytest
from test_sam import (
    HERE,
    LEARNING_RATE,
    RHO,
    assert_close,
    compiled,
    float64,  # noqa: F401  (autouse: float64 in this module too)
    linear_loss_and_gradient,
    linear_model,
    reference_gradients,
    reference_step,
    regression_data,
    run_script,
)

from keras_optnotes.training import SharpnessAwareMinimization

BATCH = 8
TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def data():
    return regression_data(2)


# ---- the float64 NumPy reference ---------------------------------------------------


def dot(a, b):
    return sum(np.sum(s * t) for s, t in zip(a, b))


def reference_run(
    weights, batches, interval, alpha, splits=1, adaptive=False, eta=0.01
):
    """SGD steps over `batches`; yields (weights, g_v) after each step."""
    direction = [np.zeros_like(w) for w in weights]
    for t, (x, y, sample_weight) in enumerate(batches):
        if t % interval == 0:
            g, update, _, _ = reference_gradients(
                weights, x, y, sample_weight, adaptive=adaptive, eta=eta, splits=splits
            )
            coefficient = dot(g, update) / dot(g, g)
            direction = [s - coefficient * a for a, s in zip(g, update)]
        else:
            _, update = linear_loss_and_gradient(weights, x, y, sample_weight)
            if alpha is not None:
                factor = alpha * np.sqrt(
                    dot(update, update) / dot(direction, direction)
                )
                update = [a + factor * v for a, v in zip(update, direction)]
        weights = [w - LEARNING_RATE * u for w, u in zip(weights, update)]
        yield weights, direction


def batches(data, weighted, count=4):
    x, y, sample_weight = data
    for step in range(count):
        part = slice(BATCH * step, BATCH * (step + 1))
        yield x[part], y[part], sample_weight[part] if weighted else None


# ---- closed forms ------------------------------------------------------------------

CASES = {
    "interval": {},
    "looksam": {"looksam_alpha": 0.5},
    "looksam_without_jit": {"looksam_alpha": 0.5, "jit_compile": False},
    "looksam_asam_splits_weighted": {
        "looksam_alpha": 0.75,
        "adaptive": True,
        "eta": 0.01,
        "num_batch_splits": 4,
        "sample_weight": True,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_four_steps_with_interval_two_equal_closed_form(data, case):
    """k = 2: SAM at iterations 0 and 2, plain or LookSAM at 1 and 3. The weights after
    every step to 1e-12, and LookSAM's kept g_v after every step."""
    options = dict(CASES[case])
    weighted = options.pop("sample_weight", False)
    model = linear_model()
    sam = compiled(model, rho=RHO, interval=2, **options)
    expected = reference_run(
        model.get_weights(),
        batches(data, weighted),
        2,
        options.get("looksam_alpha"),
        options.get("num_batch_splits", 1),
        options.get("adaptive", False),
        options.get("eta", 0.01),
    )
    for (x, y, sample_weight), (weights, direction) in zip(
        batches(data, weighted), expected
    ):
        sam.train_on_batch(x, y, sample_weight=sample_weight)
        assert_close(model.get_weights(), weights, TOLERANCE)
        if "looksam_alpha" in options:
            stored = [keras.ops.convert_to_numpy(v) for v in sam._looksam_directions]
            assert_close(stored, direction, TOLERANCE)
            assert max(np.max(np.abs(v)) for v in direction) > 1e-3
    assert int(keras.ops.convert_to_numpy(sam.optimizer.iterations)) == 4


@pytest.mark.parametrize(
    "compile_options", [{"steps_per_execution": 2}, {"run_eagerly": True}]
)
def test_other_train_functions_equal_closed_form(data, compile_options):
    """`fit` over four batches with k = 2 and LookSAM where the kind of step is a
    conditional inside the step (`tf.cond` / `lax.cond` / Python): several steps per
    call (not on PyTorch: Keras refuses it there), and eager steps."""
    if "steps_per_execution" in compile_options and keras.backend.backend() == "torch":
        pytest.skip("Keras' PyTorch backend takes one step per call only")
    x, y, _ = data
    model = linear_model()
    expected = list(reference_run(model.get_weights(), batches(data, False), 2, 0.5))
    sam = SharpnessAwareMinimization(model, rho=RHO, interval=2, looksam_alpha=0.5)
    sam.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse", **compile_options
    )
    sam.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert_close(model.get_weights(), expected[-1][0], TOLERANCE)


def test_looksam_alpha_zero_is_the_plain_interval(data):
    """α = 0 adds nothing between SAM steps: the same weights as `looksam_alpha=None`
    (to rounding: different arithmetic), and a different run from α = 0.5."""
    runs = {}
    for alpha in (None, 0.0, 0.5):
        model = linear_model()
        sam = compiled(model, rho=RHO, interval=2, looksam_alpha=alpha)
        for x, y, _ in batches(data, False):
            sam.train_on_batch(x, y)
        runs[alpha] = model.get_weights()
    assert_close(runs[0.0], runs[None], TOLERANCE)
    assert max(np.max(np.abs(a - b)) for a, b in zip(runs[0.5], runs[None])) > 1e-3


def test_interval_one_is_sam_at_every_step(data):
    """`interval=1`, with or without `looksam_alpha`, is SAM at every step: three
    steps of `fit` (m-sharpness, ASAM and sample weights on) equal test_sam.py's
    float64 NumPy SAM step, `looksam_alpha` changes no bit, and there is no LookSAM
    state."""
    x, y, sample_weight = data
    runs = []
    for options in ({}, {"interval": 1, "looksam_alpha": 0.5}):
        model = linear_model()
        initial = model.get_weights()
        sam = compiled(
            model, rho=RHO, adaptive=True, eta=0.01, num_batch_splits=2, **options
        )
        sam.fit(x[:24], y[:24], sample_weight=sample_weight[:24], batch_size=BATCH,
                shuffle=False, verbose=0)  # fmt: skip
        runs.append(model.get_weights())
        assert sam._looksam_directions == []
        assert len(sam.non_trainable_variables) == len(model.non_trainable_variables)
    expected = initial
    for step in range(3):
        part = slice(BATCH * step, BATCH * (step + 1))
        expected, _, _ = reference_step(
            expected,
            x[part],
            y[part],
            sample_weight[part],
            adaptive=True,
            eta=0.01,
            splits=2,
        )
    assert_close(runs[0], expected, TOLERANCE)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_zero_gradient_keeps_zero_direction_and_no_nan(data):
    """At the exact minimum (zero weights and targets, no penalty) g = g_s = 0: the
    projection's 0/0 gives g_v = 0, and LookSAM's ‖g‖/‖g_v‖ gives the plain (zero)
    gradient; the weights stay exactly 0 through SAM and LookSAM steps."""
    x, _, _ = data
    model = linear_model(l2=0.0)
    model.set_weights([np.zeros((3, 1)), np.zeros(1)])
    sam = compiled(model, rho=RHO, interval=2, looksam_alpha=0.5)
    for _ in range(3):
        logs = sam.train_on_batch(x[:BATCH], np.zeros((BATCH, 1)), return_dict=True)
        assert logs["loss"] == 0.0
    for w in [*model.get_weights(), *sam._looksam_directions]:
        assert np.all(keras.ops.convert_to_numpy(w) == 0.0)


def test_steps_between_run_one_forward_pass_and_each_kind_traces_once(data):
    """The model's Python calls, k = 3 with LookSAM. On PyTorch, where the step runs
    as Python each time: once per step between SAM steps, twice per SAM step. On
    TensorFlow and JAX they are traces: the kind of step is chosen on the host, each
    kind traced once, the SAM step at the first call and the step between at the
    second (a conditional of both kinds in one traced step would trace both at the
    first call); what runs there is measured by `benchmarks/sam_step.py`."""
    calls = []

    class Counted(keras.layers.Layer):
        def call(self, inputs):
            calls.append(1)
            return inputs

    x, y, _ = data
    linear = linear_model()
    model = keras.Sequential([keras.Input((3,)), Counted(), linear])
    sam = compiled(model, rho=RHO, interval=3, looksam_alpha=0.5)
    counts = []
    for _ in range(7):
        calls.clear()
        sam.train_on_batch(x[:BATCH], y[:BATCH])
        counts.append(len(calls))
    # The first call also builds the metrics and the optimizer (JAX, PyTorch: by a
    # symbolic call).
    if keras.backend.backend() == "torch":
        assert counts[1:] == [1, 1, 2, 1, 1, 2]
    else:
        assert counts[1:] == [1, 0, 0, 0, 0, 0]


# ---- state: saved, loaded, resumed mid-interval ------------------------------------


def looksam_model(data):
    model = linear_model()
    sam = SharpnessAwareMinimization(model, rho=RHO, interval=3, looksam_alpha=0.5)
    sam.compile(optimizer=keras.optimizers.Adam(0.0625), loss="mse")
    return sam


@pytest.mark.slow
def test_resumed_mid_interval_from_keras_file_in_a_fresh_process(data, tmp_path):
    """k = 3, two steps per epoch: saved after iterations 0 (SAM) and 1, the fresh
    process runs 2 (LookSAM, with the saved g_v) and 3 (SAM): the same bits as the
    uninterrupted run, weights, g_v and the optimizer's state."""
    x, y, sample_weight = data
    sam = looksam_model(data)
    fit = {"batch_size": 16, "epochs": 1, "shuffle": False, "verbose": 0}
    sam.fit(x, y, sample_weight=sample_weight, **fit)
    path = tmp_path / "sam.keras"
    sam.save(path)
    np.savez(tmp_path / "data.npz", x=x, y=y, sample_weight=sample_weight)
    sam.fit(x, y, sample_weight=sample_weight, **fit)
    resumed = run_script(HERE / "processes" / "sam_resume.py", str(tmp_path))
    assert resumed["config"]["interval"] == 3
    assert resumed["config"]["looksam_alpha"] == 0.5
    state = np.load(tmp_path / "resumed.npz")
    assert_close(
        [state[f"w{i}"] for i in range(len(sam.weights))], sam.get_weights(), 0.0
    )
    optimizer = [keras.ops.convert_to_numpy(v) for v in sam.optimizer.variables]
    assert_close([state[f"o{i}"] for i in range(len(optimizer))], optimizer, 0.0)


def test_backup_and_restore_resumes_mid_interval(data, tmp_path):
    """`BackupAndRestore` (it saves with `save_weights` and resumes with
    `load_weights` into a freshly compiled wrapper): an epoch of 2 steps, then a new
    run of 2 epochs resumes at iteration 2 of k = 3, and ends with the bits of 2
    uninterrupted epochs."""
    x, y, _ = data
    fit = {"batch_size": 16, "shuffle": False, "verbose": 0}
    uninterrupted = looksam_model(data)
    uninterrupted.fit(x, y, epochs=2, **fit)
    backup = keras.callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)
    looksam_model(data).fit(x, y, epochs=1, callbacks=[backup], **fit)
    resumed = looksam_model(data)
    history = resumed.fit(x, y, epochs=2, callbacks=[backup], **fit)
    assert len(history.history["loss"]) == 1  # only the second epoch ran
    assert_close(resumed.get_weights(), uninterrupted.get_weights(), 0.0)
    assert len(resumed.get_weights()) == 4  # kernel, bias and their two g_v
    assert_close(
        [keras.ops.convert_to_numpy(v) for v in resumed.optimizer.variables],
        [keras.ops.convert_to_numpy(v) for v in uninterrupted.optimizer.variables],
        0.0,
    )


# ---- mixed precision ---------------------------------------------------------------


def test_mixed_float16_looksam_matches_float32(data):
    """Under mixed_float16 (loss scale 2⁸, never overflowing here) six steps with k = 2
    and LookSAM stay within float16 rounding of the same steps in float32, g_v is
    float32 and finite, and no step was skipped."""
    x, y, _ = data
    x, y = x.astype("float32"), y.astype("float32")
    keras.config.set_floatx("float32")
    weights = {}
    try:
        for policy in ("mixed_float16", "float32"):
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(11)
            model = keras.Sequential(
                [
                    keras.Input((3,)),
                    keras.layers.Dense(8, "tanh"),
                    keras.layers.Dense(1),
                ]
            )
            sam = SharpnessAwareMinimization(model, interval=2, looksam_alpha=0.5)
            optimizer = keras.optimizers.SGD(0.05)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer, initial_scale=2.0**8
                )
            sam.compile(optimizer=optimizer, loss="mse")
            sam.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
            weights[policy] = model.get_weights()
            for v in sam._looksam_directions:
                assert keras.backend.standardize_dtype(v.dtype) == "float32"
                assert np.all(np.isfinite(keras.ops.convert_to_numpy(v)))
            assert int(keras.ops.convert_to_numpy(sam.optimizer.iterations)) == 6
    finally:
        keras.mixed_precision.set_global_policy("float64")
        keras.config.set_floatx("float64")
    for a, b in zip(weights["mixed_float16"], weights["float32"]):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-3)


# ---- tf.distribute -----------------------------------------------------------------


@pytest.mark.tensorflow_only
@pytest.mark.slow
def test_mirrored_strategy_looksam_per_replica(data):
    """2 logical CPUs, global batches of 16, k = 2, α = 0.5. SAM step: each replica r
    perturbs with its own 8 samples, the update is the mean of the g_s,r and g_v the
    mean of the replicas' g_v,r (stored over 2: Keras divides each replica's loss by
    the number of replicas, and g_v with it). LookSAM step: each
    replica adds α (‖g_r‖/‖g_v‖) g_v to its own g_r, the update is their mean."""
    result = run_script(HERE / "distributed_sam.py", "looksam")
    x, y, _ = regression_data(0)  # test_sam.py's data: distributed_sam.py's too
    weights = [np.asarray(w) for w in result["initial"]]
    shards = [slice(0, 8), slice(8, 16)]
    updates, directions = [], []
    for part in shards:
        g, g_s, _, _ = reference_gradients(weights, x[part], y[part], None, l2=0.0)
        updates.append(g_s)
        directions.append([s - dot(g, g_s) / dot(g, g) * a for a, s in zip(g, g_s)])
    weights = [w - LEARNING_RATE * (a + b) / 2 for w, a, b in zip(weights, *updates)]
    direction = [(a + b) / 2 for a, b in zip(*directions)]
    updates = []
    for part in (slice(16, 24), slice(24, 32)):
        _, g = linear_loss_and_gradient(weights, x[part], y[part], None, l2=0.0)
        factor = 0.5 * np.sqrt(dot(g, g) / dot(direction, direction))
        updates.append([a + factor * v for a, v in zip(g, direction)])
    weights = [w - LEARNING_RATE * (a + b) / 2 for w, a, b in zip(weights, *updates)]
    stored = [2 * np.asarray(v) for v in result["directions"]]
    assert_close(stored, direction, TOLERANCE)
    assert_close([np.asarray(w) for w in result["trained"]], weights, TOLERANCE)


@pytest.mark.slow
def test_data_parallel_on_two_devices_equals_one_device():
    """JAX's `keras.distribution.DataParallel` on 2 host devices: SAM, LookSAM every
    2nd step and the interval with m-sharpness train to the single-device weights
    (float64, to 1e-13: the global batch is the same, only the reductions are split)."""
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution runs on JAX")
    result = run_script(HERE / "processes" / "sam_data_parallel.py")
    assert result["devices"] == 2
    for name in ("sam", "looksam", "interval_splits"):
        assert result[name]["difference"] < 1e-13, name
        assert result[name]["moved"] > 1e-3, name


# ---- construction ------------------------------------------------------------------


def test_config_round_trip():
    sam = SharpnessAwareMinimization(linear_model(), interval=5, looksam_alpha=0.7)
    config = sam.get_config()
    assert (config["interval"], config["looksam_alpha"]) == (5, 0.7)
    clone = SharpnessAwareMinimization.from_config(config)
    assert clone.get_config() == config
    assert len(clone._looksam_directions) == 2
