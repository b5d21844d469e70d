"""The notes' parameter norm penalty, and one call that puts it on a built model."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras

from keras_optnotes.checks import check_in_range

_NORMALIZATION_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.UnitNormalization,
    keras.layers.RMSNormalization,
)


@keras.saving.register_keras_serializable(package="keras_optnotes")
class ParameterNormPenalty(keras.regularizers.Regularizer):
    """Parameter norm penalty Ω(W), in the notes' α/2 convention.

    With α the strength `alpha`:

        norm=2:  Ω(W) = α/2 · ‖W‖²₂ = α/2 · Σ W²     ∂Ω/∂W = α W
        norm=1:  Ω(W) = α · ‖W‖₁   = α · Σ |W|      ∂Ω/∂W = α sign(W)

    (the subgradient α sign(W) is 0 where W = 0, on every backend).

    Added to the data loss, the L2 form makes the gradient step of every penalized
    weight gain α W, which is what the notes call weight decay through the loss.

    Warning: Keras' `keras.regularizers.L2(l2)` is l2 · ‖W‖²₂ without the 1/2, so
    `ParameterNormPenalty(alpha)` equals `L2(alpha / 2)`. Neither is the decoupled
    weight decay of the optimizers' `weight_decay=` keyword (Loshchilov & Hutter),
    which shrinks the weights outside the gradient and so is not rescaled by
    adaptive methods such as Adam.

    Args:
        alpha: the strength α ≥ 0.
        norm: 2 for the squared L2 norm with the 1/2 factor, 1 for the L1 norm.

    Returns:
        A `keras.regularizers.Regularizer`; called on a tensor it returns the scalar
        penalty.

    Example:
        >>> layer = keras.layers.Dense(3, kernel_regularizer=ParameterNormPenalty(1e-4))

    References:
        Goodfellow, Bengio & Courville, "Deep Learning", MIT Press 2016, §7.1
        (parameter norm penalties).
    """

    def __init__(self, alpha: float = 0.01, norm: int = 2):
        self.alpha = check_in_range("alpha", alpha, 0.0)
        if isinstance(norm, bool) or norm not in (1, 2):
            raise ValueError(f"`norm` must be 1 or 2. Received: norm={norm!r}")
        self.norm = int(norm)

    def __call__(self, x):
        if self.norm == 2:
            return 0.5 * self.alpha * keras.ops.sum(keras.ops.square(x))
        # |x| as x sign(x) with sign(x) held constant: the subgradient sign(x), 0 at
        # x = 0, on every backend (JAX differentiates its own |x| to 1 at 0).
        sign = keras.ops.stop_gradient(keras.ops.sign(x))
        return self.alpha * keras.ops.sum(x * sign)

    def get_config(self) -> dict:
        return {"alpha": self.alpha, "norm": self.norm}


def _is_bias_or_normalization(layer: keras.layers.Layer, variable) -> bool:
    return isinstance(layer, _NORMALIZATION_LAYERS) or variable.name == "bias"


def apply_penalty(
    model: keras.layers.Layer,
    penalty: keras.regularizers.Regularizer | Callable,
    *,
    include: Callable[[keras.layers.Layer, keras.Variable], bool] | None = None,
    skip_bias_and_normalization: bool = True,
) -> list[keras.Variable]:
    """Puts `penalty` on every matching trainable weight of an already built model.

    After the call `model.losses` carries Ω(W) for each penalized weight W, so that
    `model.fit` minimizes data loss + Σ Ω(W) and the gradient of each penalized weight
    gains ∂Ω/∂W (α W for `ParameterNormPenalty(alpha)`).

    The penalty is set both on the variable (`Variable.regularizer`, which Keras
    collects into `layer.losses`) and on the owning layer's `<name>_regularizer`
    attribute (`kernel_regularizer`, `bias_regularizer`, ...), which is what the
    layer's `get_config` saves, so the penalty survives a `.keras` round trip. A
    weight whose layer has no such attribute is still penalized, with a warning that
    the penalty will not be saved.

    Args:
        model: a built Keras model or layer.
        penalty: a regularizer (any callable from a tensor to a scalar that Keras can
            serialize), e.g. `ParameterNormPenalty(1e-4)`.
        include: optional predicate `include(layer, variable) -> bool`; only weights
            for which it returns True are penalized. By default every trainable
            weight is.
        skip_bias_and_normalization: leave biases and the weights of normalization
            layers (batch, layer, group, unit, RMS) alone, as is customary.

    Returns:
        The list of variables that were penalized.

    Example:
        >>> apply_penalty(model, ParameterNormPenalty(1e-3))

    References:
        Goodfellow, Bengio & Courville, "Deep Learning", MIT Press 2016, §7.1.
    """
    if not callable(penalty):
        raise ValueError(
            "`penalty` must be a callable regularizer such as "
            f"ParameterNormPenalty(alpha). Received: penalty={penalty!r}"
        )
    if not model.built:
        raise ValueError(
            "`model` must be built before a penalty can be applied; call it on data "
            "or call `model.build(input_shape)` first."
        )
    penalized = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for variable in layer._trainable_variables:
            if skip_bias_and_normalization and _is_bias_or_normalization(
                layer, variable
            ):
                continue
            if include is not None and not include(layer, variable):
                continue
            variable.regularizer = penalty
            attribute = f"{variable.name}_regularizer"
            if hasattr(layer, attribute):
                setattr(layer, attribute, penalty)
            else:
                warnings.warn(
                    f"Layer {layer.name!r} has no `{attribute}` attribute: the "
                    f"penalty on {variable.path!r} applies in training but is not "
                    "saved with the model.",
                    stacklevel=2,
                )
            penalized.append(variable)
    return penalized
