"""Noise on weights (Keras only puts noise on inputs and activations)."""

from __future__ import annotations

import keras

from keras_optnotes.checks import check_in_range


@keras.saving.register_keras_serializable(package="keras_optnotes")
class WeightNoise(keras.layers.Wrapper):
    """Wrapper that adds fresh Gaussian noise to a layer's kernel while training.

    With W the wrapped layer's kernel and σ = `stddev`, every training forward pass
    computes the wrapped layer with

        W̃ = W + ε,   ε ~ N(0, σ² I) drawn anew for each call,

    and the gradient flows to W through W̃ (∂W̃/∂W = I). At inference the layer runs
    with W itself. The variable W is never written to: the noisy value is substituted
    only for the duration of the call (`keras.StatelessScope`), so the kernel that
    the optimizer updates, and that `get_weights` and saving see, stays clean. The
    wrapped layer's own state updates (moving statistics) and activity-regularizer
    losses (of the noisy output) are kept.

    Every trainable weight of the wrapped layer whose name ends in "kernel"
    (`kernel`, `recurrent_kernel`, `depthwise_kernel`, ...) is perturbed; biases
    are not. The noise comes from a `keras.random.SeedGenerator` that the layer
    holds, so it works inside an XLA-compiled train step (`jit_compile=True`).

    Args:
        layer: the layer to wrap, e.g. `keras.layers.Dense(64)`; it must own a
            kernel.
        stddev: σ ≥ 0, the standard deviation of the noise.
        seed: optional integer seed for the layer's noise.
        **kwargs: the keyword arguments of `keras.layers.Layer` (`name`, ...).

    Returns:
        A Keras layer with the wrapped layer's inputs and outputs.

    Example:
        >>> noisy = WeightNoise(keras.layers.Dense(32, activation="relu"), stddev=0.05)

    References:
        Graves, "Practical Variational Inference for Neural Networks", NeurIPS 2011.
        Goodfellow, Bengio & Courville, "Deep Learning", MIT Press 2016, §7.5.
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        stddev: float,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(layer, **kwargs)
        self.stddev = check_in_range("stddev", stddev, 0.0)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = getattr(layer, "supports_masking", False)

    def build(self, input_shape=None):
        super().build(input_shape)
        if not self._noisy_variables():
            raise ValueError(
                f"`layer` must own a kernel to put noise on; {self.layer.name!r} "
                f"({type(self.layer).__name__}) has trainable weights "
                f"{[v.name for v in self.layer.trainable_weights]}."
            )
        self.built = True

    def _noisy_variables(self) -> list:
        return [v for v in self.layer.trainable_weights if v.name.endswith("kernel")]

    def call(self, inputs, training=None):
        if not training or self.stddev == 0.0:
            return self.layer(inputs, training=training)
        noisy = {id(v) for v in self._noisy_variables()}
        # Every variable of the wrapped layer gets a value in the scope, not only the
        # kernels: inside a stateless train step (JAX) the variables hold no value of
        # their own, only the enclosing scope does.
        mapping = [
            (
                variable,
                variable.value
                + self.stddev
                * keras.random.normal(
                    variable.shape, dtype=variable.dtype, seed=self.seed_generator
                )
                if id(variable) in noisy
                else variable.value,
            )
            for variable in self.layer.variables
        ]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.layer(inputs, training=training)
        # What the wrapped layer updated (moving statistics, counters) and the losses
        # it added (activity regularizers) go on to the enclosing call.
        for variable in self.layer.non_trainable_variables:
            variable.assign(scope.get_current_value(variable))
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"stddev": self.stddev, "seed": self.seed})
        return config
