"""Pinned: Keras' own `Adagrad` and `Adadelta` on TensorFlow are wrong for an
`Embedding`'s sparse gradient when a batch repeats a token id; this package's rules
are right. docs/notes/real-architectures.md tells users; if a Keras release fixes
it, the pin fails and the note must change.

A `tf.IndexedSlices` gradient lists a row once per occurrence of its id; the dense
gradient is their sum. Keras squares the slices one by one (Σ g_i² where the rule
needs (Σ g_i)²) and updates from them, so its accumulators and steps differ from
the same rule run on the dense gradient.
"""

import keras
import numpy as np
import pytest

from keras_optnotes import optimizers

pytestmark = pytest.mark.tensorflow_only

ROWS, WIDTH, STEPS = 5, 2, 3
IDS = [1, 3, 1, 1]  # row 1 three times in one batch


def _gradients():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(len(IDS), WIDTH)) for _ in range(STEPS)]


def _dense(values):
    dense = np.zeros((ROWS, WIDTH))
    np.add.at(dense, IDS, values)
    return dense


def adagrad_reference(table, learning_rate, initial, epsilon):
    """G ← G + g², θ ← θ − η g / √(G + ε), on the dense gradient (float64)."""
    accumulator = np.full_like(table, initial)
    for values in _gradients():
        g = _dense(values)
        accumulator += g**2
        table = table - learning_rate * g / np.sqrt(accumulator + epsilon)
    return table


def adadelta_reference(table, learning_rate, rho, epsilon):
    """Zeiler's Algorithm 1 with a learning rate, on the dense gradient (float64)."""
    mean_square, mean_step = np.zeros_like(table), np.zeros_like(table)
    for values in _gradients():
        g = _dense(values)
        mean_square = rho * mean_square + (1 - rho) * g**2
        step = -np.sqrt(mean_step + epsilon) / np.sqrt(mean_square + epsilon) * g
        mean_step = rho * mean_step + (1 - rho) * step**2
        table = table + learning_rate * step
    return table


def _run(optimizer, sparse):
    import tensorflow as tf

    table = keras.Variable(np.ones((ROWS, WIDTH)), dtype="float64")
    for values in _gradients():
        if sparse:
            gradient = tf.IndexedSlices(
                tf.constant(values), tf.constant(IDS), tf.constant([ROWS, WIDTH])
            )
        else:
            gradient = tf.constant(_dense(values))
        optimizer.apply([gradient], [table])
    return table.numpy()


def _error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


CASES = {
    "Adagrad": (
        # η = 0.125: the learning-rate variable is float32 in Keras and here alike.
        dict(learning_rate=0.125, initial_accumulator_value=0.1, epsilon=1e-7),
        lambda t: adagrad_reference(t, 0.125, 0.1, 1e-7),
    ),
    "Adadelta": (
        dict(learning_rate=1.0, rho=0.95, epsilon=1e-6),
        lambda t: adadelta_reference(t, 1.0, 0.95, 1e-6),
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_keras_rule_is_wrong_on_repeated_ids_and_ours_is_right(rule):
    kwargs, reference = CASES[rule]
    expected = reference(np.ones((ROWS, WIDTH)))
    keras_rule = getattr(keras.optimizers, rule)
    # Keras on the dense gradient is its rule (to the float32 rounding of its
    # hyper-parameters, ~1e-9): the reference is Keras' own formula.
    assert _error(_run(keras_rule(**kwargs), sparse=False), expected) < 1e-7
    # On the sparse gradient it is not (measured: Adagrad 1.0e-1, Adadelta 5.3e-3).
    assert _error(_run(keras_rule(**kwargs), sparse=True), expected) > 1e-3
    ours = getattr(optimizers, rule)(jit_compile=False, **kwargs)
    assert _error(_run(ours, sparse=True), expected) < 1e-12
    fused = getattr(optimizers, rule)(**kwargs)
    assert _error(_run(fused, sparse=True), expected) < 1e-12
