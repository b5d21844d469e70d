"""One factory for the normalization variants the notes list; the layers are Keras'
(group and instance normalization with a check Keras lacks)."""

from __future__ import annotations

import math

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
    - "group" (`GroupNormalization`, Keras' layer of that name, Wu & He 2018): over
      the spatial axes and a group of C/groups channels of each example; `groups=1`
      is layer normalization over (H, W, C), `groups=-1` (one channel per group) is
      instance normalization. One channel per group with no spatial extent would
      output β everywhere; building it raises.

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
        return GroupNormalization(**kwargs)
    raise ValueError(
        f"`kind` must be one of {', '.join(repr(k) for k in NORMALIZATION_KINDS)}. "
        f"Received: kind={kind!r}"
    )


@keras.saving.register_keras_serializable(package="keras_optnotes")
class GroupNormalization(keras.layers.GroupNormalization):
    """Keras' `GroupNormalization`, refusing groups of a single value per example.

    With one channel per group (`groups` equal to the channels, or -1) on inputs
    whose spatial axes hold one value, (N, C) or (N, 1, 1, C), each statistic is taken
    over a single value, x̂ = 0, and every output is the offset β whatever the input;
    Keras' layer computes that silently, this one raises at `build`, naming the shape.

    It takes the arguments of `keras.layers.GroupNormalization` unchanged (`groups`,
    `axis`, `epsilon`, `center`, `scale`, ...).

    Example:
        >>> layer = GroupNormalization(groups=4)
        >>> y = layer(keras.ops.ones((2, 8, 8, 16)))  # 4 groups of 4 channels

    References:
        Wu & He, "Group Normalization", ECCV 2018.
    """

    def build(self, input_shape):
        shape = tuple(input_shape)
        axis = self.axis if self.axis >= 0 else len(shape) + self.axis
        channels = shape[axis]
        others = [size for i, size in enumerate(shape) if i not in (0, axis)]
        if channels is not None and None not in others:
            groups = channels if self.groups == -1 else self.groups
            if groups == channels and math.prod(others) == 1:
                raise ValueError(
                    f"Group normalization with one channel per group "
                    f"(groups={self.groups}) needs spatial axes with more than one "
                    "value: here every group of every example holds a single value, "
                    "so every output would be the offset β. Use kind='layer' for "
                    "dense features, or fewer groups. Received: "
                    f"input_shape={shape}"
                )
        super().build(input_shape)


@keras.saving.register_keras_serializable(package="keras_optnotes")
class InstanceNormalization(GroupNormalization):
    """Instance normalization: `GroupNormalization` with one channel per group.

    Each example's channels are standardized over the spatial axes separately, then
    scaled and shifted (γ, β per channel). The spatial axes must hold more than one
    value: `build` refuses (N, C) or (N, 1, 1, C), on which every output would be β.

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
