"""The augmentation recipe: shapes, mixed labels, determinism, Cutout area."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_augmented_batches import check_cutmix, check_mixup, distinct_images

from keras_optnotes.data import augment

NUM_CLASSES = 10
BATCH = 10


def constant_images():
    # Image i is filled with the value of its class c_i = i, so a mix of images i and
    # j with weight lam has pixel value lam c_i + (1 - lam) c_j = sum_c c * y_mixed[c].
    labels = np.arange(20) % NUM_CLASSES
    images = np.broadcast_to(labels[:, None, None, None], (20, 8, 8, 1))
    images = images.astype("float32") + 1.0
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)


def digits_like():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 1.0, size=(20, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=20)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)


def arrays(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_mixup_mixes_images_and_labels_with_the_same_weight():
    batches = arrays(augment(constant_images(), mixup_alpha=0.4, num_classes=10))
    for images, labels in batches:
        assert images.shape == (BATCH, 8, 8, 1) and labels.shape == (BATCH, 10)
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        assert labels.min() >= 0.0
        expected_pixel = labels @ (np.arange(NUM_CLASSES) + 1.0)
        np.testing.assert_allclose(images[:, 0, 0, 0], expected_pixel, atol=1e-4)
        np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 0.0, atol=1e-5)
    assert any((labels.max(axis=1) < 0.99).any() for _, labels in batches)


def test_cutmix_pastes_pixels_from_one_other_image():
    for images, labels in arrays(
        augment(constant_images(), cutmix_alpha=1.0, num_classes=10)
    ):
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        for image, label in zip(images, labels, strict=True):
            sources = set(np.unique(image)) - {0.0}
            # Every pixel comes from the image itself or from its one partner.
            assert len(sources) <= 2
            assert sources <= set(np.flatnonzero(label > 0) + 1.0)


@pytest.mark.parametrize(
    "technique, check",
    [({"mixup_alpha": 1.0}, check_mixup), ({"cutmix_alpha": 1.0}, check_cutmix)],
)
def test_mixing_in_the_pipeline_follows_the_equations(technique, check):
    # Checked with NumPy as on arrays (test_augmented_batches): one class per sample,
    # so a one-hot row says which inputs an output image was made of.
    x = distinct_images()
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(len(x)))).batch(8)
    batches = arrays(augment(dataset, num_classes=len(x), **technique))
    for images, labels in batches:
        check(x, images, labels)
    assert any(((labels > 0).sum(axis=1) == 2).any() for _, labels in batches)


def test_one_hot_labels_pass_through_and_integer_labels_need_num_classes():
    images = np.ones((4, 8, 8, 1), dtype="float32")
    one_hot = keras.utils.to_categorical([0, 1, 2, 3], 4)
    dataset = tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(4)
    ((_, labels),) = arrays(augment(dataset, mixup_alpha=0.2))
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        augment(digits_like(), cutmix_alpha=0.5)


def test_geometric_layers_keep_or_crop_the_shape():
    out = arrays(augment(digits_like(), flip="horizontal", rotate=0.05, zoom=0.1))
    assert [x.shape for x, _ in out] == [(BATCH, 8, 8, 1)] * 2
    assert [y.shape for _, y in out] == [(BATCH,)] * 2
    cropped = arrays(augment(digits_like(), crop=(6, 5)))
    assert [x.shape for x, _ in cropped] == [(BATCH, 6, 5, 1)] * 2


def images_and_outputs(dataset, **kwargs):
    inputs = np.concatenate([x.numpy() for x, _ in dataset])
    outputs = np.concatenate([x for x, _ in arrays(augment(dataset, **kwargs))])
    return inputs, outputs


@pytest.mark.parametrize(
    "mode, mirror",
    [
        ("horizontal", lambda x: x[:, ::-1]),
        ("vertical", lambda x: x[::-1]),
        # Keras draws once per image for both axes: a half turn or nothing.
        ("horizontal_and_vertical", lambda x: x[::-1, ::-1]),
    ],
)
def test_flip_gives_the_image_or_its_mirror_image(mode, mirror):
    inputs, outputs = images_and_outputs(digits_like(), flip=mode)
    flipped = [
        np.array_equal(output, mirror(image))
        for image, output in zip(inputs, outputs, strict=True)
    ]
    for image, output, was_flipped in zip(inputs, outputs, flipped, strict=True):
        if not was_flipped:
            np.testing.assert_array_equal(output, image)
    assert 0 < sum(flipped) < len(inputs)


def test_crop_is_a_window_of_the_input_at_varying_places():
    inputs, outputs = images_and_outputs(digits_like(), crop=(6, 5))
    corners = set()
    for image, output in zip(inputs, outputs, strict=True):
        # All pixels of digits_like differ, so the window's place is unique.
        (place,) = [
            (i, j)
            for i in range(8 - 6 + 1)
            for j in range(8 - 5 + 1)
            if np.array_equal(output, image[i : i + 6, j : j + 5])
        ]
        corners.add(place)
    assert len(corners) > 1


SIZE = 32
CENTRE = (SIZE - 1) / 2


def blob_images(radius=10.0, angle=0.3, count=20):
    """A Gaussian blob (σ = 1.5 px) at polar position (radius, angle) from the centre,
    the angle counter-clockwise from the +x axis as seen (rows grow downwards)."""
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    row, column = CENTRE - radius * np.sin(angle), CENTRE + radius * np.cos(angle)
    image = np.exp(-((rows - row) ** 2 + (columns - column) ** 2) / (2 * 1.5**2))
    images = np.broadcast_to(image[None, :, :, None], (count, SIZE, SIZE, 1))
    labels = np.zeros(count, dtype="int64")
    return tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels)).batch(
        BATCH
    )


def blob_positions(images):
    """(radius, angle) of each image's intensity centroid."""
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    weights = images[..., 0].reshape(len(images), -1)
    row = weights @ rows.ravel() / weights.sum(axis=1)
    column = weights @ columns.ravel() / weights.sum(axis=1)
    return np.hypot(CENTRE - row, column - CENTRE), np.arctan2(
        CENTRE - row, column - CENTRE
    )


def test_rotation_turns_the_image_by_up_to_the_fraction_of_a_full_turn():
    rotate = 0.05  # ±0.05 of a turn: ±18°
    inputs, outputs = images_and_outputs(blob_images(), rotate=rotate)
    assert np.abs(outputs - inputs).max() > 0.1
    radius, angle = blob_positions(outputs)
    np.testing.assert_allclose(radius, 10.0, atol=0.02)  # turned, not scaled
    turn = angle - 0.3
    assert np.abs(turn).max() <= 2 * np.pi * rotate + 1e-3
    # 20 angles uniform on ±18°: the largest beyond ±12.6° but with probability 0.7^20.
    assert np.abs(turn).max() > 0.7 * 2 * np.pi * rotate
    assert (turn > 0.01).any() and (turn < -0.01).any()


def test_zoom_scales_about_the_centre_by_up_to_the_factor():
    zoom = 0.1  # the image scaled by 1/(1 + f), f uniform in [-0.1, 0.1]
    inputs, outputs = images_and_outputs(blob_images(), zoom=zoom)
    assert np.abs(outputs - inputs).max() > 0.1
    radius, angle = blob_positions(outputs)
    np.testing.assert_allclose(angle, 0.3, atol=0.01)  # aspect ratio kept
    scale = radius / 10.0
    assert scale.min() >= 1 / (1 + zoom) - 0.01 and scale.max() <= 1 / (1 - zoom) + 0.01
    assert scale.min() < 0.97 and scale.max() > 1.03


def test_cutout_erases_the_requested_area():
    # A patch of area 1/4 of an 8 x 8 image is 4 x 4 = 16 pixels, set to zero.
    for images, _ in arrays(augment(digits_like(), cutout=0.25)):
        np.testing.assert_array_equal((images == 0).sum(axis=(1, 2, 3)), 16)


RECIPE = dict(rotate=0.05, zoom=0.1, cutout=0.1, mixup_alpha=0.3, num_classes=10)


def test_same_seed_same_stream_new_pass_new_draws():
    first = arrays(augment(digits_like(), seed=7, **RECIPE))
    second = arrays(augment(digits_like(), seed=7, **RECIPE))
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other_seed = arrays(augment(digits_like(), seed=8, **RECIPE))
    assert not np.array_equal(first[0][0], other_seed[0][0])
    dataset = augment(digits_like(), seed=7, **RECIPE)
    epoch_one, epoch_two = arrays(dataset), arrays(dataset)
    assert not np.array_equal(epoch_one[0][0], epoch_two[0][0])


def test_inside_model_fit_with_xla():
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(
        augment(digits_like(), rotate=0.05, cutmix_alpha=1.0, num_classes=10),
        epochs=2,
        shuffle=False,
        verbose=0,
    )
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"flip": "diagonal"}, "flip"),
        ({"rotate": -0.1}, "rotate"),
        ({"zoom": 0.0}, "zoom"),
        ({"crop": (0, 4)}, "crop"),
        ({"cutout": 1.5}, "cutout"),
        ({"mixup_alpha": 0.0, "num_classes": 10}, "mixup_alpha"),
        ({"cutmix_alpha": 2.0, "num_classes": 10}, "cutmix_alpha"),
        ({"mixup_alpha": 0.2, "num_classes": 1}, "num_classes"),
        ({"crop": (9, 4)}, r"crop=\(9, 4\).*8 x 8"),  # Keras would upscale
        ({"crop": (4, 9)}, r"crop=\(4, 9\).*8 x 8"),
        ({"seed": "x"}, "seed='x'"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 1.5}, "seed=1.5"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        augment(digits_like(), **kwargs)


def dataset_of(images, labels, batch=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return dataset if batch is None else dataset.batch(batch)


def test_unbatched_dataset_is_refused():
    unbatched = dataset_of(np.ones((4, 8, 8, 1), "float32"), np.arange(4))
    with pytest.raises(ValueError, match=r"`dataset`.*unbatched.*\.batch"):
        augment(unbatched, mixup_alpha=0.2, num_classes=4)


def test_images_without_a_channel_axis_are_refused():
    grey = dataset_of(np.ones((4, 8, 8), "float32"), np.arange(4), batch=2)
    with pytest.raises(ValueError, match=r"`dataset`.*\(None, 8, 8\).*channel axis"):
        augment(grey, rotate=0.1)


def test_one_hot_labels_of_another_width_than_num_classes_are_refused():
    one_hot = keras.utils.to_categorical([0, 1, 2, 3], 4)
    dataset = dataset_of(np.ones((4, 8, 8, 1), "float32"), one_hot, batch=2)
    with pytest.raises(ValueError, match=r"num_classes=3.*4"):
        augment(dataset, mixup_alpha=0.2, num_classes=3)


def test_integer_labels_outside_num_classes_stop_the_first_batch_holding_one():
    # Label values are data: only the batch that holds them can tell. tf.one_hot
    # would silently give such a label an all-zero row.
    labels = np.array([0, 1, 2, 3, 4, 5])
    dataset = dataset_of(np.ones((6, 8, 8, 1), "float32"), labels, batch=3)
    stream = iter(augment(dataset, mixup_alpha=0.2, num_classes=3))
    next(stream)  # labels 0, 1, 2
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"num_classes=3.*\[0, 3\)"
    ):
        next(stream)


def test_dataset_of_pairs_is_required():
    with pytest.raises(ValueError, match="dataset"):
        augment(np.zeros((2, 8, 8, 1)), rotate=0.1)
