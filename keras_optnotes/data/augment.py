"""Batch-level image augmentation for `model.fit`, built from Keras' own layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_optnotes.checks import check_in_range, check_integer

if TYPE_CHECKING:
    import tensorflow as tf

_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _check_fraction(name: str, value, upper: float | None = 1.0) -> float:
    return check_in_range(name, value, 0.0, upper, low_inclusive=False)


def _shape(shape) -> str:
    return str(tuple(shape.as_list()))


def _batch_shapes(dataset, tf):
    """The static shapes of a batch's images and labels, after checking them."""
    if not isinstance(dataset, tf.data.Dataset) or not (
        isinstance(dataset.element_spec, tuple) and len(dataset.element_spec) == 2
    ):
        raise ValueError(
            "`dataset` must be a batched tf.data.Dataset of (images, labels). "
            f"Received: dataset={dataset!r}"
        )
    images, labels = (spec.shape for spec in dataset.element_spec)
    if images.rank == 3 and labels.rank == 0:
        raise ValueError(
            "`dataset` must give batches, but it is unbatched: images of shape "
            f"{_shape(images)} with scalar labels. Batch it first: dataset.batch(n)."
        )
    if images.rank != 4:
        received = "of unknown rank" if images.rank is None else _shape(images)
        raise ValueError(
            "`dataset` must give batches of images of shape (N, H, W, C), channels "
            f"last. Received: images {received}. Grey-level images need a channel "
            "axis (x[..., np.newaxis]); an unbatched dataset needs .batch(n)."
        )
    if labels.rank not in (1, 2):
        raise ValueError(
            "`dataset` must give labels of shape (N,) (class ids) or (N, K) "
            f"(one-hot). Received: labels of shape {labels}"
        )
    return images, labels


def _one_hot(labels, num_classes: int, tf):
    """One-hot rows of integer labels; a class id outside [0, num_classes) stops the
    batch (tf.one_hot would give it an all-zero row)."""
    ids = tf.cast(labels, "int64")
    message = (
        f"augment(num_classes={num_classes}): a batch holds class ids outside "
        f"[0, {num_classes}), the range `num_classes` allows"
    )
    checks = [
        tf.debugging.assert_non_negative(ids, message=message),
        tf.debugging.assert_less(
            ids, tf.constant(num_classes, "int64"), message=message
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.one_hot(ids, num_classes)


def augment(
    dataset: tf.data.Dataset,
    *,
    flip: str | None = None,
    rotate: float | None = None,
    zoom: float | None = None,
    crop: tuple[int, int] | None = None,
    mixup_alpha: float | None = None,
    cutmix_alpha: float | None = None,
    cutout: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Augments a batched image dataset of (x, y) pairs with Keras' own layers.

    Each batch x of shape (N, H, W, C), channels last, goes through, in this order
    and only for the arguments given:

    - `flip`: `keras.layers.RandomFlip(flip)`, each image mirrored or not with
      probability 1/2 ("horizontal_and_vertical" mirrors both axes together, a
      half turn, or neither);
    - `rotate`: `keras.layers.RandomRotation(rotate)`, an angle drawn in
      [−rotate, rotate] · 2π;
    - `zoom`: `keras.layers.RandomZoom(zoom)`, the height and width scaled by up to
      ±zoom;
    - `crop`: `keras.layers.RandomCrop(h, w)`, a random h × w window (the output
      is h × w; at inference Keras' layer center-crops, so build the model for
      h × w and center-crop the validation images the same way);
    - `cutout`: `keras.layers.RandomErasing`, one rectangle covering the fraction
      `cutout` of the image area set to 0 in every image (DeVries & Taylor);
    - `mixup_alpha`: `keras.layers.MixUp(alpha)`: x̃ = λ x_i + (1−λ) x_j,
      ỹ = λ y_i + (1−λ) y_j with λ ~ Beta(α, α) per example (Zhang et al.);
    - `cutmix_alpha`: `keras.layers.CutMix` with λ ~ Beta(α, α): a box of area
      (1−λ) of the image is pasted from x_j, ỹ = λ y_i + (1−λ) y_j, λ recomputed
      from the box (Yun et al.).

    MixUp and CutMix need one-hot labels: integer labels of shape (N,) are turned
    into one-hot float labels (`num_classes` needed); mixed labels still sum to 1.
    The augmentation runs in the `tf.data` pipeline, outside the model, so the
    model's train step stays XLA-compiled (`jit_compile=True`) and validation data
    is untouched. Under a fixed `seed` the augmented stream is the same on every
    call of `augment`; each pass over the returned dataset draws new
    transformations (a new epoch sees new augmentations).

    Args:
        dataset: a batched `tf.data.Dataset` of (images, labels).
        flip: "horizontal", "vertical" or "horizontal_and_vertical".
        rotate: rotation factor in (0, 1] (fraction of a full turn).
        zoom: zoom factor in (0, 1].
        crop: (height, width) of the random crop, positive integers.
        mixup_alpha: α > 0 of MixUp's Beta(α, α).
        cutmix_alpha: α in (0, 1] of CutMix's Beta(α, α) (Keras bounds it by 1).
        cutout: the erased fraction of the image area, in (0, 1].
        num_classes: the number of classes, for integer labels with MixUp/CutMix.
        seed: integer seed; layer i is seeded `seed + i`.

    Returns:
        A `tf.data.Dataset` of augmented (images, labels) batches.

    Example:
        >>> train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        >>> model.fit(augment(train, rotate=0.05, mixup_alpha=0.2, num_classes=10))

    References:
        Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
        Yun et al., "CutMix", ICCV 2019.
        DeVries & Taylor, "Improved Regularization of CNNs with Cutout", 2017.
    """
    # Imported here: the command line reads `keras_optnotes.data` before any backend.
    import keras

    from keras_optnotes._tensorflow import import_tensorflow

    tf = import_tensorflow()
    image_shape, label_shape = _batch_shapes(dataset, tf)
    seed = check_integer("seed", seed, 0)
    image_layers = []
    if flip is not None:
        if flip not in _FLIP_MODES:
            raise ValueError(
                f"`flip` must be one of {', '.join(map(repr, _FLIP_MODES))} or None. "
                f"Received: flip={flip!r}"
            )
        image_layers.append(lambda s: keras.layers.RandomFlip(flip, seed=s))
    if rotate is not None:
        rotate = _check_fraction("rotate", rotate)
        image_layers.append(lambda s: keras.layers.RandomRotation(rotate, seed=s))
    if zoom is not None:
        zoom = _check_fraction("zoom", zoom)
        image_layers.append(lambda s: keras.layers.RandomZoom(zoom, seed=s))
    if crop is not None:
        if (
            not isinstance(crop, (tuple, list))
            or len(crop) != 2
            or not all(isinstance(c, int) and c >= 1 for c in crop)
        ):
            raise ValueError(
                "`crop` must be a pair of positive integers (height, width). "
                f"Received: crop={crop!r}"
            )
        height, width = image_shape[1:3]
        if (height is not None and crop[0] > height) or (
            width is not None and crop[1] > width
        ):
            raise ValueError(
                f"`crop` must fit in the images. Received: crop={tuple(crop)} for "
                f"{height} x {width} images (Keras' RandomCrop would upscale them)"
            )
        image_layers.append(lambda s: keras.layers.RandomCrop(*crop, seed=s))
    if cutout is not None:
        cutout = _check_fraction("cutout", cutout)
        image_layers.append(
            lambda s: keras.layers.RandomErasing(
                factor=(1.0, 1.0), scale=(cutout, cutout), fill_value=0.0, seed=s
            )
        )
    mixing_layers = []
    if mixup_alpha is not None:
        mixup_alpha = _check_fraction("mixup_alpha", mixup_alpha, upper=None)
        mixing_layers.append(lambda s: keras.layers.MixUp(alpha=mixup_alpha, seed=s))
    if cutmix_alpha is not None:
        cutmix_alpha = _check_fraction("cutmix_alpha", cutmix_alpha)
        mixing_layers.append(
            lambda s: keras.layers.CutMix(factor=(cutmix_alpha, cutmix_alpha), seed=s)
        )
    if num_classes is not None:
        num_classes = check_integer("num_classes", num_classes, 2)
    integer_labels = label_shape.rank == 1
    if mixing_layers and integer_labels and num_classes is None:
        raise ValueError(
            "MixUp and CutMix mix one-hot labels: pass `num_classes` for integer "
            "labels of shape (N,), or give one-hot labels."
        )
    if not integer_labels and num_classes not in (None, label_shape[-1]):
        raise ValueError(
            f"`num_classes` must match the one-hot labels' width. Received: "
            f"num_classes={num_classes} for labels of shape {_shape(label_shape)}"
        )
    layers = [make(seed + i) for i, make in enumerate(image_layers + mixing_layers)]
    first_mixing = len(image_layers)

    # Plain Python loops over layers: nothing for AutoGraph to convert.
    @tf.autograph.experimental.do_not_convert
    def apply(images, labels):
        images = tf.cast(images, "float32")
        for layer in layers[:first_mixing]:
            images = layer(images, training=True)
        if first_mixing < len(layers):
            labels = (
                _one_hot(labels, num_classes, tf)
                if integer_labels
                else tf.cast(labels, "float32")
            )
        for layer in layers[first_mixing:]:
            mixed = layer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    # Sequential map: the layers' seed generators advance in a fixed order.
    return dataset.map(apply)
