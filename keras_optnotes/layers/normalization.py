"""One factory for the normalization variants the notes list; the layers are Keras'."""

from __future__ import annotations

import keras

NORMALIZATION_KINDS = ("batch", "layer", "instance", "group")


def normalization(kind: str, **kwargs) -> keras.layers.Layer:
    """Returns the Keras normalization layer of the given kind.

    Each variant standardizes activations x to x̂ = (x − μ) / √(σ² + ε) and then
    applies a learned scale and shift, y = γ x̂ + β (per channel). They differ in the
    set of values μ and σ² are taken over, for channels-last activations of shape
    (N, H, W, C) (or (N, C) for a dense layer):

    - "batch" (`keras.layers.BatchNormalization`, Ioffe & Szegedy 2015): over the
      batch and the spatial axes, N·H·W values per channel. In training each batch
      is normalized with its own statistics, and moving averages of μ and σ² are
      updated (`momentum`); at inference (`training=False`, as in `predict` and
      `evaluate`) the moving averages are used instead, so an example's output no
      longer depends on the rest of its batch. Small or unrepresentative batches
      therefore make training and inference disagree.
    - "layer" (`keras.layers.LayerNormalization`, Ba et al. 2016): over the
      features of each example (by default the last axis); no batch statistics,
      same computation in training and inference.
    - "instance" (`InstanceNormalization`, Keras' `GroupNormalization` with
      `groups=-1`, Ulyanov et al. 2016): over the spatial axes of each example and
      channel separately. It needs spatial axes: on a dense layer's (N, C) output
      each statistic would be taken over one value and every output would be β, so
      building it on inputs of fewer than three axes raises.
    - "group" (`keras.layers.GroupNormalization`, Wu & He 2018): over the spatial
      axes and a group of C/groups channels of each example; `groups=1` is layer
      normalization over (H, W, C), `groups=-1` (one channel per group) is
      instance normalization.

    Only "batch" behaves differently in training and inference.

    Args:
        kind: one of "batch", "layer", "instance", "group" (case-insensitive).
        **kwargs: passed to the Keras layer (`epsilon`, `axis`, `groups`,
            `momentum`, ...). For "instance", `groups` is fixed at -1.

    Returns:
        A new, unbuilt Keras layer.

    Example:
        >>> normalization("group", groups=4)
        <GroupNormalization name=group_normalization, built=False>

    References:
        Ioffe & Szegedy, "Batch Normalization", ICML 2015.
        Ba, Kiros & Hinton, "Layer Normalization", arXiv:1607.06450, 2016.
        Ulyanov, Vedaldi & Lempitsky, "Instance Normalization", arXiv:1607.08022.
        Wu & He, "Group Normalization", ECCV 2018.
    """
    key = kind.lower() if isinstance(kind, str) else kind
    if key == "batch":
        return keras.layers.BatchNormalization(**kwargs)
    if key == "layer":
        return keras.layers.LayerNormalization(**kwargs)
    if key == "instance":
        return InstanceNormalization(**kwargs)
    if key == "group":
        return keras.layers.GroupNormalization(**kwargs)
    raise ValueError(
        f"`kind` must be one of {', '.join(repr(k) for k in NORMALIZATION_KINDS)}. "
        f"Received: kind={kind!r}"
    )


@keras.saving.register_keras_serializable(package="keras_optnotes")
class InstanceNormalization(keras.layers.GroupNormalization):
    """Instance normalization: Keras' `GroupNormalization` with one channel per group.

    Each example's channels are standardized over the spatial axes separately, then
    scaled and shifted (γ, β per channel). Inputs need at least one spatial axis,
    (N, ..., C) with three or more axes; `build` refuses (N, C), on which every
    output would be β.

    Args:
        **kwargs: those of `keras.layers.GroupNormalization` (`axis`, `epsilon`,
            `center`, `scale`, ...) but `groups`, which is fixed at -1.
    """

    def __init__(self, **kwargs):
        groups = kwargs.pop("groups", -1)
        if groups != -1:
            raise ValueError(
                "`groups` is fixed at -1 for kind='instance' (one channel per group); "
                "use kind='group' to choose the number of groups. "
                f"Received: groups={groups!r}"
            )
        super().__init__(groups=-1, **kwargs)

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                "Instance normalization needs inputs with spatial axes, (batch, ..., "
                "channels), at least 3 axes: over a single value per example and "
                "channel every output would be the offset β. Use kind='layer' for "
                f"dense features. Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)
