"""The augmentation recipe: shapes, mixed labels, determinism, Cutout area."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        augment(digits_like(), **kwargs)


def test_dataset_of_pairs_is_required():
    with pytest.raises(ValueError, match="dataset"):
        augment(np.zeros((2, 8, 8, 1)), rotate=0.1)
