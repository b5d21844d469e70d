"""Stochastic weight averaging: the uniform mean of the weights at the end of epochs."""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from keras_optnotes.checks import check_integer


def _input_batches(data, batch_size):
    """The model inputs of `data`, one batch at a time, as NumPy structures."""
    if hasattr(data, "shape") or (
        isinstance(data, (dict, list, tuple)) and _is_array_structure(data)
    ):
        arrays = keras.tree.map_structure(np.asarray, data)
        size = len(keras.tree.flatten(arrays)[0])
        for start in range(0, size, batch_size):
            yield keras.tree.map_structure(
                lambda a, s=start: a[s : s + batch_size], arrays
            )
        return
    for element in data:
        # (x, y) or (x, y, sample_weight) from a dataset: the inputs are x.
        if isinstance(element, tuple):
            element = element[0]
        yield keras.tree.map_structure(np.asarray, element)


def _is_array_structure(data):
    leaves = keras.tree.flatten(data)
    return bool(leaves) and all(hasattr(leaf, "shape") for leaf in leaves)


def _per_channel(x, axis):
    """`x` in float64 as a matrix with one column per channel (`axis`) and one row
    per value BN reduces over."""
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    return np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])


class _Moments:
    """Count, mean and sum of squared deviations per channel, merged batch by batch
    (Chan, Golub, LeVeque 1979) in float64: every element counts once, whatever the
    batch sizes."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x, axis):
        x = _per_channel(x, axis)
        n, mean = x.shape[0], x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def variance(self):
        return self.m2 / self.count


class _BatchAverage:
    """The average over batches of per-batch means and unbiased per-batch variances
    per channel, in float64: what PyTorch's `swa_utils.update_bn` leaves in
    `running_mean` and `running_var` (a cumulative moving average, momentum=None,
    of the statistics BN's forward pass records)."""

    def __init__(self, layer_name):
        self.layer_name = layer_name
        self.means, self.variances = [], []

    def add(self, x, axis):
        x = _per_channel(x, axis)
        if x.shape[0] < 2:
            raise ValueError(
                "recompute_batch_normalization_statistics(statistics="
                f"'batch_average'): a batch gives BatchNormalization layer "
                f"'{self.layer_name}' {x.shape[0]} value per channel; the unbiased "
                "variance needs at least 2 (use a larger batch_size, or "
                "statistics='exact')."
            )
        self.means.append(x.mean(axis=0))
        self.variances.append(x.var(axis=0, ddof=1))

    @property
    def count(self):
        return len(self.means)

    @property
    def mean(self):
        return np.mean(self.means, axis=0)

    @property
    def variance(self):
        return np.mean(self.variances, axis=0)


BN_STATISTICS = ("exact", "batch_average")


def _check_statistics(name, value):
    if value not in BN_STATISTICS:
        raise ValueError(
            f"Argument `{name}` must be one of {BN_STATISTICS}. Received: "
            f"{name}={value!r}"
        )
    return value


def _batch_normalization_layers(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def recompute_batch_normalization_statistics(
    model, data, batch_size=32, statistics="exact"
):
    """Sets every trainable `BatchNormalization` layer's moving statistics to the
    statistics of its input over one pass of `data` through `model` in training mode.

    Symbols: x the input of one BN layer over the whole pass (N elements per channel,
    all batches and all positions BN reduces over), x_b its part in batch b (n_b
    elements per channel, B batches), μ its moving mean, σ² its moving variance.
    `statistics="exact"` (the default):

        μ  ← (1/N) Σ x
        σ² ← (1/N) Σ (x − μ)²

    the full-data mean and the biased (population) variance, the convention of the
    batch variance that Keras' BN layer itself computes and stores.
    `statistics="batch_average"`, PyTorch's `torch.optim.swa_utils.update_bn` and
    Izmailov et al.'s code (BN with momentum=None, a cumulative average of the
    per-batch statistics BN records, whose variance is the unbiased one):

        μ  ← (1/B) Σ_b mean(x_b)
        σ² ← (1/B) Σ_b (1/(n_b − 1)) Σ (x_b − mean(x_b))²

    The two differ by the spread of the batch means (missing from the second) and
    by the factor n_b/(n_b − 1): for small batches by several percent in σ²
    (docs/notes/real-architectures.md has a measured example); neither is wrong. The statistics
    are reset before the pass and then set directly, not through the layer's momentum:
    Keras' BN momentum is the reverse of PyTorch's (moving ← momentum·moving +
    (1 − momentum)·batch), and no momentum gives an exact mean anyway. With batches of
    unequal size (a smaller last batch) every element still counts once: the batches
    are merged weighted by their sizes, not averaged batch by batch. Upstream BN
    layers normalize with their batch statistics during the pass (training mode), as
    in the paper. Layers with `trainable=False` run in inference mode in Keras and are
    left as they are.

    Args:
        model: a built Keras model.
        data: model inputs as in `model.fit(x=...)`: an array, or a dict, list or
            tuple of arrays for a model of several inputs, cut into batches of
            `batch_size`; or any other iterable of batches (a `tf.data.Dataset`, a
            generator), each `x` or `(x, y, ...)`. A generator is consumed.
        batch_size: the batch size for array `data`. Defaults to 32.
        statistics: `"exact"` or `"batch_average"` (see above). Defaults to
            `"exact"`.

    Returns:
        The number of BN layers updated.
    """
    _check_statistics("statistics", statistics)
    layers = _batch_normalization_layers(model)
    if not layers:
        return 0
    moments = {
        id(layer): _Moments() if statistics == "exact" else _BatchAverage(layer.name)
        for layer in layers
    }
    for layer in layers:
        shape, dtype = layer.moving_mean.shape, layer.moving_mean.dtype
        layer.moving_mean.assign(ops.zeros(shape, dtype=dtype))
        layer.moving_variance.assign(ops.ones(shape, dtype=dtype))

        def recording_call(inputs, *args, _layer=layer, **kwargs):
            if kwargs.get("mask") is not None:
                raise ValueError(
                    "recompute_batch_normalization_statistics: masked inputs to "
                    f"BatchNormalization layer '{_layer.name}' are not supported."
                )
            moments[id(_layer)].add(ops.convert_to_numpy(inputs), _layer.axis)
            return type(_layer).call(_layer, inputs, *args, **kwargs)

        layer.call = recording_call
    try:
        for batch in _input_batches(data, batch_size):
            model(batch, training=True)
    finally:
        for layer in layers:
            del layer.call
    for layer in layers:
        statistics = moments[id(layer)]
        if statistics.count == 0:
            continue
        dtype = layer.moving_mean.dtype
        layer.moving_mean.assign(ops.convert_to_tensor(statistics.mean, dtype=dtype))
        layer.moving_variance.assign(
            ops.convert_to_tensor(statistics.variance, dtype=dtype)
        )
    return len(layers)


@keras.saving.register_keras_serializable(package="keras_optnotes")
class StochasticWeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018) as a callback.

    Symbols: w the model's trainable weights at the end of an epoch, w̄ their average,
    n the number of snapshots so far, s `start_epoch`, f `frequency`; epochs count
    from 0, as Keras' callbacks count them.

        at the end of epochs s, s + f, s + 2f, … :  n ← n + 1 ;  w̄ ← w̄ + (w − w̄)/n
        at the end of training:                     w ← w̄

    so the model ends with the arithmetic mean of the snapshots. When
    `batch_norm_data` is given, every trainable `BatchNormalization` layer's moving
    mean and variance are then reset and recomputed over one pass of that data in
    training mode with the averaged weights (see
    `recompute_batch_normalization_statistics`: by default the exact full-data mean
    and biased variance; `bn_statistics="batch_average"` gives PyTorch's
    `swa_utils.update_bn` instead); without it they are those of the last epoch, which belong to other
    weights. Non-trainable weights other than BN statistics are left as they are.
    The average is kept in the weights' own dtype through `keras.ops`, so it stays on
    the device and the callback runs on every backend.

    Use with Keras' EMA: the SWA average is not an optimizer variable, so
    `SwapEMAWeights` does not see it. `SwapEMAWeights(swap_on_epoch=True)` leaves the
    EMA weights in the model from each epoch's end to the next epoch's start: list
    this callback *before* it to average the raw weights, after it to average the EMA
    weights. Evaluate the SWA model after `fit` (or in a later callback's
    `on_train_end`), as `SwapEMAWeights` evaluates the EMA one.

    Args:
        start_epoch: s, the first epoch (0-based) whose weights are averaged; an
            integer ≥ 0.
        frequency: f, take a snapshot every f epochs from s on; an integer ≥ 1.
            Defaults to 1.
        batch_norm_data: None, or the inputs to recompute the BN statistics with, as
            in `recompute_batch_normalization_statistics`: arrays as `fit`'s `x`, or
            an iterable of batches `x` or `(x, y, ...)` such as a `tf.data.Dataset`.
            Defaults to None.
        batch_size: the batch size for array `batch_norm_data`. Defaults to 32.
        bn_statistics: `"exact"` (the full-data mean and biased variance) or
            `"batch_average"` (the average of per-batch means and of unbiased
            per-batch variances, as PyTorch's `update_bn`). Defaults to `"exact"`.

    Example:
        >>> swa = StochasticWeightAveraging(start_epoch=15, batch_norm_data=x_train)
        >>> model.fit(x_train, y_train, epochs=20, callbacks=[swa])

    References:
        Izmailov, Podoprikhin, Garipov, Vetrov, Wilson, "Averaging Weights Leads to
        Wider Optima and Better Generalization", UAI 2018.

    Warning: if training ends before `start_epoch`, no snapshot exists; the weights
    are left as trained and a warning says so.
    """

    def __init__(
        self,
        start_epoch,
        frequency=1,
        batch_norm_data=None,
        batch_size=32,
        bn_statistics="exact",
    ):
        super().__init__()
        self.bn_statistics = _check_statistics("bn_statistics", bn_statistics)
        self.start_epoch = check_integer("start_epoch", start_epoch, 0)
        self.frequency = check_integer("frequency", frequency, 1)
        self.batch_norm_data = batch_norm_data
        self.batch_size = check_integer("batch_size", batch_size, 1)
        self.snapshot_count = 0
        self._average = None

    def on_train_begin(self, logs=None):
        self.snapshot_count = 0
        self._average = None

    def takes_snapshot(self, epoch: int) -> bool:
        """Whether the weights at the end of `epoch` (0-based) enter the average."""
        return (
            epoch >= self.start_epoch
            and (epoch - self.start_epoch) % self.frequency == 0
        )

    def on_epoch_end(self, epoch, logs=None):
        if not self.takes_snapshot(epoch):
            return
        weights = [ops.convert_to_tensor(w) for w in self.model.trainable_weights]
        self.snapshot_count += 1
        if self._average is None:
            self._average = [ops.copy(w) for w in weights]
            return
        n = self.snapshot_count
        self._average = [
            ops.add(a, ops.divide(ops.subtract(w, a), ops.cast(n, w.dtype)))
            for a, w in zip(self._average, weights)
        ]

    def average_weights(self) -> list:
        """The current average of the trainable weights, as NumPy arrays."""
        if self._average is None:
            raise ValueError(
                "No snapshot yet: the average starts at the end of epoch "
                f"start_epoch={self.start_epoch}."
            )
        return [ops.convert_to_numpy(a) for a in self._average]

    def on_train_end(self, logs=None):
        if self._average is None:
            warnings.warn(
                f"StochasticWeightAveraging: training ended before start_epoch="
                f"{self.start_epoch}; no snapshot was taken and the weights are left "
                "as trained.",
                stacklevel=2,
            )
            return
        for variable, value in zip(self.model.trainable_weights, self._average):
            variable.assign(value)
        if self.batch_norm_data is not None:
            recompute_batch_normalization_statistics(
                self.model, self.batch_norm_data, self.batch_size, self.bn_statistics
            )

    def get_config(self):
        # batch_norm_data is data, not configuration: pass it to `from_config`'s result.
        return {
            "start_epoch": self.start_epoch,
            "frequency": self.frequency,
            "batch_size": self.batch_size,
            "bn_statistics": self.bn_statistics,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
