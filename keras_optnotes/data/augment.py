"""Batch-level image augmentation for `model.fit`, built from Keras' own layers.

Two ways to feed `fit` with the same recipe (flip, rotation, zoom, crop, Cutout,
MixUp, CutMix):

- `augment(dataset, ...)`: a batched `tf.data.Dataset` in, a `tf.data.Dataset` out;
  the layers run in the `tf.data` pipeline. Needs TensorFlow (any Keras backend).
- `augmented_batches(x, y, ...)`: NumPy arrays in, a `keras.utils.PyDataset` out; the
  layers run on the active backend. No TensorFlow needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_optnotes.checks import check_in_range, check_integer

if TYPE_CHECKING:
    import keras
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
    is untouched. It needs TensorFlow, whatever the Keras backend; for NumPy arrays
    on any backend without TensorFlow, `augmented_batches` applies the same recipe. Under a fixed `seed` the augmented stream is the same on every
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

    Raises:
        TensorFlowNotInstalledError: TensorFlow is not installed (a
            `ModuleNotFoundError`, one line with the install command).
        ValueError: an argument out of range, or a dataset that is not batched
            (images, labels) pairs, naming the argument.

    Example:
        >>> train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        >>> model.fit(augment(train, rotate=0.05, mixup_alpha=0.2, num_classes=10))

    References:
        Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
        Yun et al., "CutMix", ICCV 2019.
        DeVries & Taylor, "Improved Regularization of CNNs with Cutout", 2017.
    """
    from keras_optnotes._tensorflow import import_tensorflow

    tf = import_tensorflow("keras_optnotes.data.augment (a tf.data pipeline)")
    image_shape, label_shape = _batch_shapes(dataset, tf)
    recipe = _Recipe.make(
        tuple(image_shape.as_list()),
        tuple(label_shape.as_list()),
        flip=flip,
        rotate=rotate,
        zoom=zoom,
        crop=crop,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        cutout=cutout,
        num_classes=num_classes,
        seed=seed,
    )
    layers = recipe.layers()

    # Plain Python loops over layers: nothing for AutoGraph to convert.
    @tf.autograph.experimental.do_not_convert
    def apply(images, labels):
        if recipe.mixes and recipe.integer_labels:
            labels = _one_hot(labels, recipe.num_classes, tf)
        elif recipe.mixes:
            labels = tf.cast(labels, "float32")
        return recipe.apply(layers, tf.cast(images, "float32"), labels)

    # Sequential map: the layers' seed generators advance in a fixed order.
    return dataset.map(apply)


def augmented_batches(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 32,
    shuffle: bool = True,
    augment_batch_size: int | None = None,
    flip: str | None = None,
    rotate: float | None = None,
    zoom: float | None = None,
    crop: tuple[int, int] | None = None,
    mixup_alpha: float | None = None,
    cutmix_alpha: float | None = None,
    cutout: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> keras.utils.PyDataset:
    """Augmented batches of image arrays for `model.fit`, on any backend.

    The recipe of `augment` (the same layers in the same order, layer i seeded
    `seed + i`, the same checks) applied to NumPy arrays with the active backend,
    without TensorFlow. At the start of every epoch the samples are shuffled
    (seeded with `seed`, if `shuffle`), run through the layers in training mode in
    chunks of `augment_batch_size` samples, and cut into batches of `batch_size`:

    - MixUp: x̃ = λ x_i + (1−λ) x_j, ỹ = λ y_i + (1−λ) y_j with λ ~ Beta(α, α) per
      example and j a partner from the same chunk;
    - CutMix: a box of x_i replaced by the same box of x_j, of area (1−λ) of the
      image with λ ~ Beta(α, α), ỹ = λ y_i + (1−λ) y_j with λ recomputed from the
      box.

    Each epoch draws new transformations; two objects made with the same arguments
    give the same stream. The batches are made in the calling thread, in order, so
    the stream does not depend on timing (one worker, no multiprocessing).

    Args:
        x: images of shape (N, H, W, C), channels last.
        y: labels of shape (N,) (class ids) or (N, K) (one-hot).
        batch_size: samples per batch given to `fit`, ≥ 1; the last batch of an
            epoch holds the rest.
        shuffle: shuffle the samples anew at each epoch.
        augment_batch_size: samples per call of the layers, ≥ 1 (None: `batch_size`);
            MixUp and CutMix draw partners within such a chunk, so `len(x)` pairs
            each sample with any other.
        flip: "horizontal", "vertical" or "horizontal_and_vertical" (as `augment`).
        rotate: rotation factor in (0, 1] (as `augment`).
        zoom: zoom factor in (0, 1] (as `augment`).
        crop: (height, width) of the random crop (as `augment`).
        mixup_alpha: α > 0 of MixUp's Beta(α, α) (as `augment`).
        cutmix_alpha: α in (0, 1] of CutMix's Beta(α, α) (as `augment`).
        cutout: the erased fraction of the image area, in (0, 1] (as `augment`).
        num_classes: the number of classes, for integer labels with MixUp/CutMix.
        seed: integer seed; layer i is seeded `seed + i`.

    Returns:
        A `keras.utils.PyDataset` of (images, labels) float32 NumPy batches
        (integer labels stay integers unless MixUp or CutMix one-hot encode them),
        `ceil(N / batch_size)` batches per epoch.

    Raises:
        ValueError: an argument out of range, arrays of the wrong shapes, or integer
            labels outside [0, num_classes) with MixUp or CutMix, naming the
            argument.

    Example:
        >>> batches = augmented_batches(x, y, batch_size=32, rotate=0.05,
        ...                             mixup_alpha=0.2, num_classes=10)
        >>> model.fit(batches, epochs=10)

    References:
        Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
        Yun et al., "CutMix", ICCV 2019.
        DeVries & Taylor, "Improved Regularization of CNNs with Cutout", 2017.
    """
    x, y = _check_arrays(x, y)
    batch_size = check_integer("batch_size", batch_size, 1)
    if augment_batch_size is not None:
        augment_batch_size = check_integer("augment_batch_size", augment_batch_size, 1)
    if not isinstance(shuffle, bool):
        raise ValueError(f"`shuffle` must be True or False. Received: {shuffle=!r}")
    recipe = _Recipe.make(
        (None, *x.shape[1:]),
        (None, *y.shape[1:]),
        flip=flip,
        rotate=rotate,
        zoom=zoom,
        crop=crop,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        cutout=cutout,
        num_classes=num_classes,
        seed=seed,
    )
    if recipe.mixes and recipe.integer_labels:
        y = _one_hot_array(y, recipe.num_classes)
    elif recipe.mixes:
        y = y.astype("float32")
    from keras_optnotes.data._batches import AugmentedBatches

    return AugmentedBatches(
        x.astype("float32"),
        y,
        recipe,
        batch_size=batch_size,
        augment_batch_size=augment_batch_size or batch_size,
        shuffle=shuffle,
    )


def _check_arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4:
        raise ValueError(
            "`x` must be images of shape (N, H, W, C), channels last. Received: x of "
            f"shape {x.shape}. Grey-level images need a channel axis "
            "(x[..., np.newaxis])."
        )
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise ValueError(
            f"`y` must be labels of shape (N,) (class ids) or (N, K) (one-hot) with "
            f"N = len(x) = {len(x)}. Received: y of shape {y.shape}"
        )
    if len(x) == 0:
        raise ValueError(
            f"`x` must hold at least one image. Received: x of shape {x.shape}"
        )
    return x, y


def _one_hot_array(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot float32 rows; a class id outside [0, num_classes) is refused."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`y` must hold integer class ids for MixUp and CutMix. Received: y of "
            f"dtype {labels.dtype}"
        )
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise ValueError(
            f"augmented_batches(num_classes={num_classes}): `y` holds class ids "
            f"outside [0, {num_classes}), the range `num_classes` allows: "
            f"{sorted(set(outside.tolist()))[:5]}"
        )
    return np.eye(num_classes, dtype="float32")[labels]


@dataclass(frozen=True)
class _Recipe:
    """The checked arguments of `augment` and `augmented_batches`: which Keras
    layers, in which order, with which seeds."""

    image_layers: tuple
    mixing_layers: tuple
    integer_labels: bool
    num_classes: int | None
    seed: int

    @property
    def mixes(self) -> bool:
        return bool(self.mixing_layers)

    @classmethod
    def make(
        cls,
        image_shape: tuple,
        label_shape: tuple,
        *,
        flip,
        rotate,
        zoom,
        crop,
        mixup_alpha,
        cutmix_alpha,
        cutout,
        num_classes,
        seed,
    ) -> _Recipe:
        """Checks the arguments; `image_shape` is (N, H, W, C) and `label_shape` (N,)
        or (N, K), N, H, W or K None where unknown."""
        # Imported here: the command line reads `keras_optnotes.data` before any
        # backend.
        import keras

        seed = check_integer("seed", seed, 0)
        image_layers = []
        if flip is not None:
            if flip not in _FLIP_MODES:
                raise ValueError(
                    f"`flip` must be one of {', '.join(map(repr, _FLIP_MODES))} or "
                    f"None. Received: flip={flip!r}"
                )
            image_layers.append(lambda s: keras.layers.RandomFlip(flip, seed=s))
        if rotate is not None:
            rotate = _check_fraction("rotate", rotate)
            image_layers.append(lambda s: keras.layers.RandomRotation(rotate, seed=s))
        if zoom is not None:
            zoom = _check_fraction("zoom", zoom)
            image_layers.append(lambda s: keras.layers.RandomZoom(zoom, seed=s))
        if crop is not None:
            _check_crop(crop, image_shape)
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
            mixing_layers.append(
                lambda s: keras.layers.MixUp(alpha=mixup_alpha, seed=s)
            )
        if cutmix_alpha is not None:
            cutmix_alpha = _check_fraction("cutmix_alpha", cutmix_alpha)
            mixing_layers.append(
                lambda s: keras.layers.CutMix(
                    factor=(cutmix_alpha, cutmix_alpha), seed=s
                )
            )
        if num_classes is not None:
            num_classes = check_integer("num_classes", num_classes, 2)
        integer_labels = len(label_shape) == 1
        if mixing_layers and integer_labels and num_classes is None:
            raise ValueError(
                "MixUp and CutMix mix one-hot labels: pass `num_classes` for integer "
                "labels of shape (N,), or give one-hot labels."
            )
        if not integer_labels and num_classes not in (None, label_shape[-1]):
            raise ValueError(
                f"`num_classes` must match the one-hot labels' width. Received: "
                f"num_classes={num_classes} for labels of shape {label_shape}"
            )
        return cls(
            tuple(image_layers), tuple(mixing_layers), integer_labels, num_classes, seed
        )

    def layers(self) -> list[keras.layers.Layer]:
        """New layers, layer i seeded `seed + i`."""
        makers = self.image_layers + self.mixing_layers
        return [make(self.seed + i) for i, make in enumerate(makers)]

    def apply(self, layers: list, images, labels) -> tuple[Any, Any]:
        """`images` (float32) through the layers in training mode; the mixing layers
        also mix `labels` (float32 one-hot rows)."""
        first_mixing = len(self.image_layers)
        for layer in layers[:first_mixing]:
            images = layer(images, training=True)
        for layer in layers[first_mixing:]:
            mixed = layer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels


def _check_crop(crop, image_shape: tuple) -> None:
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
