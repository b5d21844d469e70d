"""The small networks the commands and tutorials train.

`build_classifier` gives one network per kind of input, small enough to train in
seconds on a laptop CPU, with weights fixed by a seed, so that every optimizer of a
comparison can start from exactly the same point.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_optnotes.checks import check_integer


def _glorot(seed: int, offset: int) -> keras.initializers.Initializer:
    # One seeded initializer per layer: weights depend on `seed` only, not on the
    # global random state or on how many models were built before.
    return keras.initializers.GlorotUniform(seed=seed * 1000 + offset)


def build_classifier(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    seed: int = 0,
    width: int = 64,
) -> keras.Model:
    """A small classifier: a CNN for images `(H, W, C)`, an MLP for anything else.

    CNN: Conv(width/4, 3×3, ReLU) → MaxPool 2×2 (when H, W ≥ 4) →
    Conv(width/2, 3×3, ReLU) → global average pool → Dense(num_classes, softmax).
    MLP: Flatten → Dense(width, ReLU) → Dense(width, ReLU) → Dense(num_classes,
    softmax). The CNN has 5,130 weights on the 8×8 digits.

    Args:
        input_shape: shape of one sample, without the batch axis.
        num_classes: number of classes, at least 2.
        seed: fixes every initial weight (Glorot-uniform kernels, zero biases); the
            same seed gives the same weights in any process.
        width: hidden width of the MLP; the CNN uses width/4 and width/2 filters.

    Returns:
        An uncompiled, built `keras.Model` that outputs class probabilities; train it
        with `sparse_categorical_crossentropy` on integer labels.

    Example:

    >>> model = build_classifier((8, 8, 1), 10, seed=0)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d < 1 for d in input_shape):
        raise ValueError(
            "`input_shape` must be a non-empty sequence of positive sizes; "
            f"received {input_shape!r}."
        )
    num_classes = check_integer("num_classes", num_classes, 2)
    width = check_integer("width", width, 4)

    inputs = keras.Input(shape=input_shape)
    if len(input_shape) == 3:
        x = keras.layers.Conv2D(
            width // 4,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=_glorot(seed, 1),
        )(inputs)
        if min(input_shape[:2]) >= 4:
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Conv2D(
            width // 2,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=_glorot(seed, 2),
        )(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        kind = "cnn"
    else:
        x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
        for offset in (1, 2):
            x = keras.layers.Dense(
                width, activation="relu", kernel_initializer=_glorot(seed, offset)
            )(x)
        kind = "mlp"
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=_glorot(seed, 3)
    )(x)
    return keras.Model(inputs, outputs, name=f"classifier_{kind}")
