"""The conformance harness: everything generic, run over one recipe table of all rules.

Serialization, the XLA-fused path against the plain one, convergence on an
ill-conditioned quadratic and on Rosenbrock, `model.fit`, saving with state, and every
argument check of the rules' constructors.
"""

import json
import math
import sys
import zipfile

import keras
import numpy as np
import pytest
import reference_rules
import tensorflow as tf

from keras_optnotes import optimizers

InverseTimeDecay = keras.optimizers.schedules.InverseTimeDecay

# rule -> (non-default arguments for the generic tests,
#          (arguments, steps) on the quadratic, (arguments, steps) on Rosenbrock).
# The convergence settings were found by a small search; they are ordinary settings
# for these problems (Adadelta needs η < 1 on a curvature of 100, since near the
# optimum its step is η·g·√(E_Δ+ε)/√ε).
RECIPES = {
    "GradientDescent": (
        {"learning_rate": 0.02},
        ({"learning_rate": 0.019}, 500),
        ({"learning_rate": 2e-3}, 20000),
    ),
    "Momentum": (
        {"learning_rate": 0.02, "momentum": 0.8},
        ({"learning_rate": 0.005}, 500),
        ({"learning_rate": 2e-4}, 10000),
    ),
    "NesterovMomentum": (
        {"learning_rate": 0.02, "momentum": 0.7},
        ({"learning_rate": 0.005}, 500),
        ({"learning_rate": 2e-4}, 10000),
    ),
    "Adagrad": (
        {"learning_rate": 0.1, "initial_accumulator_value": 0.1, "epsilon": 1e-6},
        ({"learning_rate": 0.5}, 500),
        ({"learning_rate": 1.0}, 10000),
    ),
    "Adadelta": (
        {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-5},
        ({"learning_rate": 0.005, "epsilon": 1e-4}, 5000),
        ({"learning_rate": 0.002, "epsilon": 0.1}, 20000),
    ),
    "RMSprop": (
        {"learning_rate": 0.01, "rho": 0.8, "epsilon_inside_sqrt": False},
        ({"learning_rate": InverseTimeDecay(0.01, 100, 1.0)}, 2000),
        ({"learning_rate": InverseTimeDecay(0.003, 1000, 1.0)}, 5000),
    ),
    "Adam": (
        {"learning_rate": 0.01, "beta_1": 0.8, "amsgrad": True},
        ({"learning_rate": 0.05}, 1000),
        ({"learning_rate": 0.02}, 5000),
    ),
}
RULES = list(RECIPES)

# Tests of TensorFlow machinery (tf.function, the XLA-fused path) are marked
# `tensorflow_only`; the others also run on JAX and PyTorch.
tensorflow_only = pytest.mark.tensorflow_only


def test_registry_lists_every_rule_in_the_notes_order():
    assert optimizers.list_rules() == tuple(RULES)
    assert isinstance(optimizers.get("nesterov_momentum"), optimizers.NesterovMomentum)
    assert isinstance(optimizers.get("RMSPROP"), optimizers.RMSprop)
    with pytest.raises(ValueError, match="'lion'.*Accepted: GradientDescent"):
        optimizers.get("lion")


# -- convergence -------------------------------------------------------------------

H = np.diag([1.0, 100.0])  # condition number 100


def _quadratic(x):
    return 0.5 * tf.reduce_sum(x * tf.linalg.matvec(tf.constant(H), x))


def _rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def _minimize(optimizer, loss, start, steps):
    x = keras.Variable(np.array(start), dtype="float64")
    optimizer.build([x])

    @tf.function
    def loop():
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                value = loss(x.value)
            optimizer.apply([tape.gradient(value, x.value)], [x])

    loop()
    return x.numpy()


@tensorflow_only
@pytest.mark.parametrize("rule", RULES)
def test_converges_on_ill_conditioned_quadratic(rule):
    kwargs, steps = RECIPES[rule][1]
    x = _minimize(optimizers.get(rule, **kwargs), _quadratic, [1.0, 1.0], steps)
    assert np.abs(x).max() < 1e-3


@tensorflow_only
@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_converges_on_rosenbrock(rule):
    kwargs, steps = RECIPES[rule][2]
    x = _minimize(optimizers.get(rule, **kwargs), _rosenbrock, [-1.5, 2.0], steps)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=2e-2)


# -- the XLA-fused path against the plain one ---------------------------------------


def _gradients(step):
    rng = np.random.default_rng(step)
    return [
        tf.constant(rng.normal(size=(4, 3)), tf.float32),
        tf.constant(rng.normal(size=(3,)), tf.float32),
    ]


def _run_steps(rule, jit_compile, in_function, steps=8):
    variables = [
        keras.Variable(np.linspace(-1, 1, 12).reshape(4, 3), dtype="float32"),
        keras.Variable(np.array([0.5, -0.5, 2.0]), dtype="float32"),
    ]
    optimizer = optimizers.get(rule, jit_compile=jit_compile, **RECIPES[rule][0])

    def apply(grads):
        optimizer.apply(grads, variables)

    if in_function:
        optimizer.build(variables)
        apply = tf.function(apply, jit_compile=in_function == "xla")
    for step in range(steps):
        apply(_gradients(step))
    assert optimizer.uses_fused_apply is jit_compile
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == steps
    return [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables]


@tensorflow_only
@pytest.mark.parametrize("rule", RULES)
def test_fused_and_plain_paths_agree_eagerly_and_in_tf_function(rule):
    """Eagerly, inside a plain `tf.function` and inside an XLA-compiled one."""
    plain = _run_steps(rule, jit_compile=False, in_function=None)
    for in_function in (None, "plain", "xla"):
        fused = _run_steps(rule, jit_compile=True, in_function=in_function)
        for a, b in zip(fused, plain):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    plain_in_function = _run_steps(rule, jit_compile=False, in_function="plain")
    for a, b in zip(plain_in_function, plain):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@tensorflow_only
@pytest.mark.parametrize("rule", [*RULES, "Lookahead"])
def test_state_built_during_a_trace_is_created_eagerly_and_steps_alike(
    rule, monkeypatch
):
    """Keras' `fit` builds the optimizer inside the first trace of its train function
    (no `tf.distribute` strategy). The state is then created in the eager context:
    no `tf.cond`-guarded initializer per variable, as a variable created inside the
    trace would get; and its steps are the rule's, against the float64 NumPy
    reference (Lookahead: around Adam, with a synchronization at step 5)."""
    from tensorflow.python.ops import cond as tf_cond

    inner = "Adam" if rule == "Lookahead" else rule
    kwargs = dict(RECIPES[inner][0])
    lr = float(np.float32(kwargs.pop("learning_rate")))
    optimizer = optimizers.get(inner, learning_rate=lr, jit_compile=False, **kwargs)
    initial = [np.linspace(-1, 1, 12).reshape(4, 3), np.array([0.5, -0.5, 2.0])]
    initial = [x.astype("float32") for x in initial]
    references = [reference_rules.RULES[inner](lr, x.shape, **kwargs) for x in initial]
    if rule == "Lookahead":
        optimizer = optimizers.Lookahead(optimizer)
        references = [
            reference_rules.Lookahead(ref, x) for ref, x in zip(references, initial)
        ]
    variables = [keras.Variable(x) for x in initial]

    conds = []
    original = tf_cond.cond

    def counting_cond(*args, **kwargs):
        # tf.function's guard of a variable initializer, not the rule's own conds.
        if sys._getframe(1).f_code.co_filename.endswith("polymorphic_function.py"):
            conds.append(args)
        return original(*args, **kwargs)

    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    with monkeypatch.context() as patch:
        patch.setattr(tf_cond, "cond", counting_cond)
        apply(_gradients(0))  # traced: builds the optimizer
    assert optimizer.built and conds == []
    for step in range(1, 6):
        apply(_gradients(step))
    expected = [x.astype(np.float64) for x in initial]
    for t in range(1, 7):
        gradients = [g.numpy().astype(np.float64) for g in _gradients(t - 1)]
        expected = [
            ref.step(theta, g, t)
            for ref, theta, g in zip(references, expected, gradients)
        ]
    for variable, value in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)


@tensorflow_only
def test_fused_apply_is_compiled_once_and_reused():
    variable = keras.Variable(np.ones(3), dtype="float32")
    optimizer = optimizers.Adam()
    for step in range(5):
        optimizer.apply([_gradients(step)[1]], [variable])
    (function,) = optimizer._fused.functions.values()
    assert function.experimental_get_tracing_count() == 1


@tensorflow_only
def test_fused_update_in_groups_equals_plain_path(monkeypatch):
    """Large models are updated in several XLA calls of bounded size (peak memory)."""
    from keras_optnotes.optimizers import base

    monkeypatch.setattr(base, "FUSED_GROUP_BYTES", 40)  # 12 floats, then 3 floats
    variables = [
        keras.Variable(np.zeros((4, 3)), dtype="float32"),
        keras.Variable(np.zeros(3), dtype="float32"),
    ]
    assert optimizers.Adam()._fused_groups(variables) == [(0, 1), (1, 2)]
    plain = _run_steps("Adam", jit_compile=False, in_function=None)
    grouped = _run_steps("Adam", jit_compile=True, in_function="plain")
    for a, b in zip(grouped, plain):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@tensorflow_only
def test_callable_learning_rate_is_read_at_every_fused_step():
    """XLA must not freeze a callable learning rate at its value when first traced."""
    rate = [0.1]
    variable = keras.Variable([0.0], dtype="float32")
    optimizer = optimizers.GradientDescent(learning_rate=lambda: rate[0])
    one = tf.constant([1.0])
    optimizer.apply([one], [variable])
    rate[0] = 0.5
    optimizer.apply([one], [variable])
    np.testing.assert_allclose(variable.numpy(), [-0.6], rtol=1e-6)


@tensorflow_only
@pytest.mark.parametrize("jit_compile", [True, False])
def test_schedule_is_followed_on_both_paths(jit_compile):
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.1, 0.01])
    variable = keras.Variable([0.0], dtype="float32")
    optimizer = optimizers.GradientDescent(schedule, jit_compile=jit_compile)
    for _ in range(3):
        optimizer.apply([tf.constant([1.0])], [variable])
    # iterations 0 and 1 use 0.1, iteration 2 uses 0.01
    np.testing.assert_allclose(variable.numpy(), [-0.21], rtol=1e-6)


# -- model.fit --------------------------------------------------------------------


def _regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3).astype("float32")[:, None]
    return x, y


def _small_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )


# Each rule once under each setting of `model.compile(jit_compile=...)`, Adam under both.
# On PyTorch `jit_compile=True` is torch.compile (about 16 s of compilation per model on
# two cores): every rule runs eagerly there, and Adam once compiled.
if keras.backend.backend() == "torch":
    FIT_CASES = [(rule, False) for rule in RULES] + [("Adam", True)]
else:
    FIT_CASES = [(rule, i % 2 == 0) for i, rule in enumerate(RULES)] + [("Adam", False)]


@pytest.mark.parametrize("rule, model_jit", FIT_CASES)
def test_model_fit_lowers_the_loss(rule, model_jit):
    x, y = _regression_data()
    model = _small_model()
    model.compile(
        optimizer=optimizers.get(rule, **RECIPES[rule][0]),
        loss="mse",
        jit_compile=model_jit,
    )
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# -- serialization and saved state -------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_config_round_trip(rule):
    optimizer = optimizers.get(
        rule, jit_compile=False, clipnorm=1.5, **RECIPES[rule][0]
    )
    config = optimizer.get_config()
    assert config["jit_compile"] is False
    assert config["clipnorm"] == 1.5
    for key, value in RECIPES[rule][0].items():
        assert config[key] == pytest.approx(value)
    clone = type(optimizer).from_config(config)
    assert clone.get_config() == config

    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == f"keras_optnotes>{rule}"
    restored = keras.optimizers.deserialize(serialized)
    assert type(restored) is type(optimizer)
    assert restored.get_config() == config
    by_name = keras.optimizers.get(f"keras_optnotes>{rule}")
    assert type(by_name) is type(optimizer)


def test_schedule_survives_config_round_trip():
    optimizer = optimizers.Adam(InverseTimeDecay(0.01, 100, 1.0))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored._learning_rate, InverseTimeDecay)
    assert restored._learning_rate.get_config() == optimizer._learning_rate.get_config()


@pytest.mark.parametrize("rule", RULES)
def test_saved_model_keeps_optimizer_state_and_resumes_exactly(rule, tmp_path):
    x, y = _regression_data()
    model = _small_model()
    model.compile(optimizer=optimizers.get(rule, **RECIPES[rule][0]), loss="mse")
    for i in range(3):
        model.train_on_batch(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The next step is the same step: the slots carried the state over.
    model.train_on_batch(x[48:], y[48:])
    loaded.train_on_batch(x[48:], y[48:])
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loading_state_of_another_layout_is_an_error(tmp_path):
    """A file whose optimizer config no longer matches its saved slots (AMSGrad state,
    config edited to plain Adam) must not load with the state silently dropped."""
    x, y = _regression_data()
    model = _small_model()
    model.compile(optimizer=optimizers.Adam(amsgrad=True), loss="mse")
    model.train_on_batch(x, y)
    path = tmp_path / "model.keras"
    model.save(path)
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["compile_config"]["optimizer"]["config"]["amsgrad"] = False
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(
        ValueError,
        match=r"optimizer 'adam.*\(Adam\): the saved state has 14 variables of shapes "
        r"\(\), \(\), \(4, 8\).*; the optimizer built has 10 variables",
    ):
        keras.models.load_model(edited)


def test_state_saved_before_the_first_step_loads(tmp_path):
    model = _small_model()
    model.compile(
        optimizer=optimizers.Adagrad(initial_accumulator_value=0.25), loss="mse"
    )
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x, y = _regression_data()
    loaded.train_on_batch(x, y)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 1


# -- argument checks ----------------------------------------------------------------

DECAY_RATES = {
    "Momentum": ["momentum"],
    "NesterovMomentum": ["momentum"],
    "Adadelta": ["rho"],
    "RMSprop": ["rho"],
    "Adam": ["beta_1", "beta_2"],
}
EPSILONS = ["Adagrad", "Adadelta", "RMSprop", "Adam"]
BAD = (
    [
        (rule, "learning_rate", value)
        for rule in RULES
        for value in (0.0, -0.1, math.nan, math.inf, "0.1", None, True)
    ]
    + [
        (rule, name, value)
        for rule, names in DECAY_RATES.items()
        for name in names
        for value in (-0.1, 1.0, 1.5, math.nan, "0.9", None)
    ]
    + [
        (rule, "epsilon", value)
        for rule in EPSILONS
        for value in (0.0, -1e-8, math.inf, "1e-8")
    ]
    + [
        ("Adagrad", "initial_accumulator_value", value)
        for value in (-0.1, math.nan, "0")
    ]
    + [(rule, "epsilon_inside_sqrt", "yes") for rule in ("Adagrad", "RMSprop", "Adam")]
    + [("Adam", "amsgrad", 1), ("Adam", "jit_compile", "true")]
    + [
        ("Adam", "clipnorm", -1.0),
        ("Adam", "clipvalue", 0.0),
        ("Adam", "global_clipnorm", -2),
        ("Adam", "gradient_accumulation_steps", 1),
        ("Adam", "gradient_accumulation_steps", 0),
        ("Adam", "gradient_accumulation_steps", 2.5),
        ("Adam", "weight_decay", -0.01),
    ]
)


@pytest.mark.parametrize(
    "rule, name, value", BAD, ids=[f"{r}-{n}-{v!r}" for r, n, v in BAD]
)
def test_bad_argument_raises_naming_it(rule, name, value):
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        optimizers.get(rule, **{name: value})
    assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    "rule, name, value", BAD, ids=[f"{r}-{n}-{v!r}" for r, n, v in BAD]
)
def test_bad_assignment_after_construction_raises_naming_it(rule, name, value):
    """The same table checks `optimizer.beta_1 = 5.0` as `Adam(beta_1=5.0)`."""
    optimizer = optimizers.get(rule)
    before = optimizer.get_config()
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        setattr(optimizer, name, value)
    assert repr(value) in str(error.value)
    assert optimizer.get_config() == before


def test_good_assignment_takes_effect_at_the_next_step():
    """Also on the fused path, whose compiled function held the old value."""
    variable = keras.Variable([1.0], dtype="float64")
    optimizer = optimizers.Momentum(learning_rate=0.1, momentum=0.5)
    one = keras.ops.convert_to_tensor([1.0], dtype="float64")
    optimizer.apply([one], [variable])  # a = 1, θ = 1 − 0.1
    optimizer.momentum = np.float32(0.25)
    optimizer.learning_rate = 0.5
    optimizer.apply([one], [variable])  # a = 0.25 + 1, θ −= 0.5 · 1.25
    lr32 = float(np.float32(0.1))
    assert variable.numpy()[0] == pytest.approx(1.0 - lr32 - 0.5 * 1.25, rel=1e-14)
    assert optimizer.get_config()["momentum"] == 0.25
    assert type(optimizer.momentum) is float


def test_two_clip_arguments_at_once_are_rejected():
    with pytest.raises(ValueError, match="clipnorm=1.0, clipvalue=0.5"):
        optimizers.Adam(clipnorm=1.0, clipvalue=0.5)


@pytest.mark.parametrize(
    "value", [np.float32(0.01), np.float64(0.01), 1, np.int64(2)], ids=repr
)
def test_numpy_scalars_and_ints_are_numbers(value):
    optimizer = optimizers.Momentum(learning_rate=value, momentum=np.float32(0.5))
    assert optimizer.learning_rate.numpy() == pytest.approx(float(value), rel=1e-6)
    assert isinstance(optimizer.momentum, float)
    assert optimizers.Adam(epsilon=np.float32(1e-7)).epsilon == pytest.approx(1e-7)
