"""A zoo of tiny real architectures, on every backend: Embedding + GRU + LSTM, a
MultiHeadAttention encoder block, Conv + BatchNormalization + Dropout, a residual
block, and a language model with tied input and output embeddings.

On each: every rule trains (the inference loss on the batch falls over a few steps
and stays finite); `model.compile` → `model.load_weights` → training resumes exactly
in the middle of a Lookahead period (each architecture with another inner rule); the
curvature diagnostics answer (a finite λ_max, in training mode) and leave every
variable of the model as it was. On the residual block one SAM step equals the step
computed by hand from two plain gradient evaluations (at w and at w + ε).

The models are tiny and the rules take their plain path (`jit_compile=False`): the
point is what the architectures do to the rules and diagnostics, not speed, and the
file must stay within the suite's budget on every backend. keras-hub's backbones are
not tested here (keras-hub is not installed).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_optnotes import optimizers
from keras_optnotes.diagnostics import HessianOperator, hessian_top_eigenvalues
from keras_optnotes.training import SharpnessAwareMinimization

N, BATCH, VOCABULARY, TOKENS = 16, 8, 11, 6
BACKEND = keras.backend.backend()


class TiedLanguageModel(keras.Model):
    """Next-token logits h Eᵀ with E the input embedding (tied weights)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(VOCABULARY, 4)
        self.hidden = keras.layers.Dense(4, activation="tanh")

    def call(self, tokens):
        hidden = self.hidden(self.embedding(tokens))
        return ops.matmul(hidden, ops.transpose(self.embedding.embeddings))


def recurrent():
    tokens = keras.Input((TOKENS,), dtype="int32")
    h = keras.layers.Embedding(VOCABULARY, 4)(tokens)
    h = keras.layers.GRU(4, return_sequences=True)(h)
    h = keras.layers.LSTM(4)(h)
    return keras.Model(tokens, keras.layers.Dense(1)(h))


def attention_encoder():
    inputs = keras.Input((5, 4))
    h = keras.layers.MultiHeadAttention(2, 2)(inputs, inputs)
    h = keras.layers.LayerNormalization()(inputs + h)
    f = keras.layers.Dense(8, activation="relu")(h)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(4)(f))
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def conv_batch_norm_dropout():
    images = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(3, 3)(images)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.Dropout(0.2)(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(images, keras.layers.Dense(1)(h))


def residual_block():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(6, activation="tanh")(inputs)
    branch = keras.layers.Dense(6, activation="tanh")(h)
    branch = keras.layers.Dense(6)(branch)
    h = keras.layers.Activation("tanh")(keras.layers.Add()([h, branch]))
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def tied_embeddings():
    model = TiedLanguageModel()
    model(np.zeros((1, TOKENS), "int32"))
    return model


@pytest.fixture(scope="module")
def zoo():
    """name -> (build, x, y, loss): `build(seed)` makes a new model."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCABULARY, size=(N, TOKENS)).astype("int32")
    images = rng.normal(size=(N, 6, 6, 1)).astype("float32")
    sequences = rng.normal(size=(N, 5, 4)).astype("float32")
    vectors = rng.normal(size=(N, 4)).astype("float32")

    def target(x):
        flat = np.asarray(x, "float32").reshape(len(x), -1)
        return np.tanh(flat[:, :1] - 0.1 * flat[:, 1:2]).astype("float32")

    entries = {
        "embedding_gru_lstm": (recurrent, tokens, target(tokens / VOCABULARY), "mse"),
        "attention_encoder": (attention_encoder, sequences, target(sequences), "mse"),
        "conv_batch_norm_dropout": (
            conv_batch_norm_dropout,
            images,
            target(images),
            "mse",
        ),
        "residual_block": (residual_block, vectors, target(vectors), "mse"),
        "tied_embeddings": (
            tied_embeddings,
            tokens,
            np.roll(tokens, -1, axis=1),  # the next token
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ),
    }

    def seeded(build):
        def build_with_seed(seed=0):
            keras.utils.set_random_seed(seed)
            return build()

        return build_with_seed

    return {name: (seeded(b), x, y, loss) for name, (b, x, y, loss) in entries.items()}


ARCHITECTURES = [
    "embedding_gru_lstm",
    "attention_encoder",
    "conv_batch_norm_dropout",
    "residual_block",
    "tied_embeddings",
]
LEARNING_RATES = {
    "GradientDescent": 0.1,
    "Momentum": 0.03,
    "NesterovMomentum": 0.03,
    "Adagrad": 0.02,
    "Adadelta": 1.0,
    "RMSprop": 0.005,
    "Adam": 0.005,
}


def _optimizer(rule):
    if rule == "Lookahead":
        return optimizers.Lookahead(
            optimizers.Adam(0.005, jit_compile=False), sync_period=2
        )
    return optimizers.get(rule, learning_rate=LEARNING_RATES[rule], jit_compile=False)


def _compiled(zoo, name, optimizer, seed=0):
    build, x, y, loss = zoo[name]
    model = build(seed)
    # Eager on TensorFlow, where tracing a train function costs more than the few
    # steps taken; on JAX eager would re-trace the recurrent layers' scans at every
    # call, so the train step is compiled there.
    model.compile(optimizer=optimizer, loss=loss, run_eagerly=BACKEND == "tensorflow")
    return model, x, y


def _batches(x, y, first, last):
    for i in range(first, last):
        part = slice((i % (N // BATCH)) * BATCH, (i % (N // BATCH) + 1) * BATCH)
        yield x[part], y[part]


def _seed_states(model):
    return [v for v in model.variables if "seed_generator" in v.path]


def _values(variables):
    return [np.array(ops.convert_to_numpy(v), copy=True) for v in variables]


RULES = [*optimizers.list_rules(), "Lookahead"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_rule_trains(zoo, name):
    """Each rule, from the same weights, takes two steps on the backend's
    gradients of the compiled loss; the loss must fall and stay finite.

    One traced gradient per architecture (the diagnostics' operator, inference
    mode) serves every rule: a train function per rule and architecture would be
    40 compilations. Keras' `fit` with each rule is covered on the resume test below
    and in the rules' own tests.
    """
    build, x, y, loss = zoo[name]
    model = build(0)
    model.compile(loss=loss)
    operator = HessianOperator(model, (x, y), batch_size=N)
    start = operator.get_weights()
    before = operator.loss()
    for rule in RULES:
        operator.set_weights(start)
        optimizer = _optimizer(rule)
        for _ in range(2):
            gradient = operator.unflatten(operator.loss_and_gradient()[1])
            optimizer.apply(
                [
                    ops.convert_to_tensor(g.astype(v.dtype))
                    for g, v in zip(gradient, model.trainable_variables)
                ],
                model.trainable_variables,
            )
        after = operator.loss()
        assert np.isfinite(after) and after < before, (rule, before, after)


# Each architecture resumes with another inner rule, so the zoo covers five rules.
RESUMED_RULES = dict(
    zip(ARCHITECTURES, ["Adam", "RMSprop", "NesterovMomentum", "Adagrad", "Adadelta"])
)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_compile_load_weights_resumes_exactly_mid_lookahead_period(zoo, name, tmp_path):
    rule = RESUMED_RULES[name]

    def optimizer():
        inner = optimizers.get(
            rule, learning_rate=LEARNING_RATES[rule], jit_compile=False
        )
        return optimizers.Lookahead(inner, sync_period=2)

    uninterrupted, x, y = _compiled(zoo, name, optimizer())
    for xb, yb in _batches(x, y, 0, 3):  # 3 steps: in the middle of a period
        uninterrupted.train_on_batch(xb, yb)
    path = tmp_path / "checkpoint.weights.h5"
    uninterrupted.save_weights(path)
    # Keras saves no seed-generator state in a checkpoint (after any resume, dropout
    # draws other masks than the uninterrupted run would): carried over by hand, so
    # that what is compared is the state the checkpoint holds.
    # (On PyTorch a dropout layer without a seed draws from torch's global
    # generator: seeded alike before both continuations.)
    seeds = _values(_seed_states(uninterrupted))
    keras.utils.set_random_seed(7)
    for xb, yb in _batches(x, y, 3, 5):
        uninterrupted.train_on_batch(xb, yb)

    resumed, _, _ = _compiled(zoo, name, optimizer(), seed=1)
    resumed.load_weights(path)
    for variable, value in zip(_seed_states(resumed), seeds):
        variable.assign(value)
    keras.utils.set_random_seed(7)
    for xb, yb in _batches(x, y, 3, 5):
        resumed.train_on_batch(xb, yb)
    for a, b in zip(_values(resumed.variables), _values(uninterrupted.variables)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        _values(resumed.optimizer.variables), _values(uninterrupted.optimizer.variables)
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_diagnostics_answer_and_leave_the_model_unchanged(zoo, name):
    model, x, y = _compiled(zoo, name, _optimizer("Adam"))
    model.train_on_batch(x, y)
    before = _values(model.variables)
    result = hessian_top_eigenvalues(
        model, (x, y), max_iterations=2, training=True, batch_size=BATCH
    )
    assert np.isfinite(result.top)
    for variable, a, b in zip(model.variables, _values(model.variables), before):
        np.testing.assert_array_equal(a, b, err_msg=variable.path)


def test_one_sam_step_equals_the_step_by_hand_on_the_residual_block(zoo):
    """g = ∇L(w), ε = ρ g/‖g‖ (NumPy), g_s = ∇L(w + ε), w ← w − η g_s (SGD).

    The two gradients come from the backend's own differentiation of the compiled
    loss (`HessianOperator.loss_and_gradient`); the perturbation and the update are
    NumPy arithmetic in float64.
    """
    rho, learning_rate = 0.05, 0.1
    build, x, y, loss = zoo["residual_block"]
    model = build(0)
    model.compile(loss=loss)
    operator = HessianOperator(model, (x, y), batch_size=N)
    w = operator.flatten(operator.get_weights())
    g = operator.loss_and_gradient()[1]
    epsilon = rho * g / np.linalg.norm(g)
    operator.set_flat_weights(w + epsilon)
    g_sam = operator.loss_and_gradient()[1]
    operator.set_flat_weights(w)
    expected = w - learning_rate * g_sam

    sam = SharpnessAwareMinimization(model, rho=rho)
    sam.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=loss)
    sam.train_on_batch(x, y)
    got = operator.flatten(operator.get_weights())
    # float32 weights: the two routes round differently at about 1e-7 of a step.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.max(np.abs(got - w)) > 1e-3  # the step moved the weights
