"""`augmented_batches`: the augmentation recipe on arrays, on any backend, and the
regularize experiment's training batches off TensorFlow.

Every sample has its own class (labels are the identity), so a batch's one-hot rows
say which inputs each output image was made of and with which weights; the pixels
are then checked against those weights with NumPy.

The file is in `test_other_backends.FILES`: it runs on TensorFlow here and on JAX and
PyTorch in their own pytest processes.
"""

import keras
import numpy as np
import pytest

from keras_optnotes.data import augmented_batches
from keras_optnotes.experiments import regularize

N = 16
SHAPE = (6, 7, 3)


def distinct_images(n=N, shape=SHAPE, seed=0):
    """Images whose pixels all differ from one another (continuous uniform draws),
    so a pixel tells which image it came from."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 1.0, size=(n, *shape)).astype("float32")


def epoch(batches):
    """One epoch of a PyDataset as (images, labels), then the epoch's end."""
    xs, ys = zip(*(batches[i] for i in range(len(batches))), strict=True)
    batches.on_epoch_end()
    return np.concatenate(xs), np.concatenate(ys)


def check_mixup(x, images, labels):
    """MixUp: x̃ = λ x_i + (1−λ) x_j with the label's own weights, ỹ = λ e_i + (1−λ) e_j
    (identity labels): x̃ = ỹ @ x over flattened images."""
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    assert labels.min() >= 0.0
    assert ((labels > 0).sum(axis=1) <= 2).all()
    expected = (labels.astype("float64") @ x.reshape(len(x), -1)).reshape(images.shape)
    np.testing.assert_allclose(images, expected, atol=2e-6)


def is_box(mask):
    """Whether the True pixels of a 2-D mask are exactly a non-empty rectangle."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return False
    box = np.zeros_like(mask)
    box[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] = True
    return np.array_equal(box, mask)


def check_cutmix(x, images, labels):
    """CutMix: each image is x_i with one box (the same in every channel) copied from
    x_j, and ỹ = λ e_i + (1−λ) e_j with 1−λ the box's area fraction. Keras draws the
    box with real-valued corners and counts the pixels whose integer grid point lies
    inside it, so a box of h x w pixels has a real area in ((h−1)(w−1), (h+1)(w+1))."""
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    height, width = images.shape[1:3]
    mixed = 0
    for image, label in zip(images, labels, strict=True):
        sources = np.flatnonzero(label > 0)
        if len(sources) == 1:
            np.testing.assert_array_equal(image, x[sources[0]])
            continue
        mixed += 1
        a, b = sources
        from_a, from_b = image == x[a], image == x[b]
        assert (from_a | from_b).all()  # every pixel copied from one of the two
        accepted = False
        for own, partner, pasted in ((a, b, from_b), (b, a, from_a)):
            channels_agree = (pasted == pasted[..., :1]).all()
            if not (channels_agree and is_box(pasted[..., 0])):
                continue
            rows = pasted[..., 0].any(axis=1).sum()
            columns = pasted[..., 0].any(axis=0).sum()
            area = label[partner] * height * width
            if (rows - 1) * (columns - 1) < area < (rows + 1) * (columns + 1):
                assert label[own] == pytest.approx(1 - label[partner], abs=1e-6)
                accepted = True
        assert accepted, f"no box of one source matches the label {label[sources]}"
    return mixed


def test_mixup_mixes_pixels_with_the_weights_of_the_labels():
    x = distinct_images()
    batches = augmented_batches(
        x,
        np.arange(N),
        batch_size=5,
        augment_batch_size=N,
        mixup_alpha=1.0,
        num_classes=N,
    )
    assert len(batches) == 4  # ceil(16 / 5), the last batch holds 1
    assert [len(batches[i][0]) for i in range(4)] == [5, 5, 5, 1]
    batches.on_epoch_end()
    for _ in range(2):
        images, labels = epoch(batches)
        assert images.dtype == labels.dtype == np.float32
        check_mixup(x, images, labels)
        # Beta(1, 1) is uniform: most rows really are mixtures.
        assert ((labels > 0).sum(axis=1) == 2).sum() >= N // 2


def test_cutmix_pastes_one_box_with_its_area_as_the_label_weight():
    x = distinct_images()
    batches = augmented_batches(
        x, np.arange(N), augment_batch_size=N, cutmix_alpha=1.0, num_classes=N
    )
    mixed = sum(check_cutmix(x, *epoch(batches)) for _ in range(2))
    assert mixed >= N // 2


def test_partners_come_from_the_same_chunk_of_augment_batch_size():
    x = distinct_images()
    batches = augmented_batches(
        x, np.arange(N), batch_size=4, mixup_alpha=1.0, num_classes=N, seed=3
    )
    for index in range(len(batches)):
        images, labels = batches[index]
        check_mixup(x, images, labels)
        sources = np.flatnonzero(labels.sum(axis=0) > 0)
        assert len(sources) <= 4  # only the 4 samples of this batch appear


def test_flip_gives_each_image_or_its_mirror_and_leaves_labels_alone():
    x = distinct_images()
    images, labels = epoch(
        augmented_batches(x, np.arange(N), batch_size=4, flip="horizontal", seed=1)
    )
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(np.sort(labels), np.arange(N))  # a permutation
    mirrored = [
        np.array_equal(image, x[k][:, ::-1]) for image, k in zip(images, labels)
    ]
    kept = [np.array_equal(image, x[k]) for image, k in zip(images, labels)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 0 < sum(mirrored) < N


def test_each_epoch_a_new_shuffle_the_same_seed_the_same_stream():
    x, y = distinct_images(), np.arange(N)
    first = augmented_batches(x, y, batch_size=4, seed=5)
    orders = [epoch(first)[1] for _ in range(2)]
    assert not np.array_equal(orders[0], orders[1])
    again = augmented_batches(x, y, batch_size=4, seed=5)
    for order in orders:
        np.testing.assert_array_equal(epoch(again)[1], order)
    # No shuffle and no layer: the arrays as given.
    images, labels = epoch(augmented_batches(x, y, batch_size=3, shuffle=False))
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


def test_new_draws_each_epoch_in_fit():
    x = distinct_images()
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(N)]
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    batches = augmented_batches(
        x,
        np.arange(N),
        batch_size=8,
        shuffle=False,  # what changes between epochs is the layers' draws
        rotate=0.1,
        mixup_alpha=0.4,
        num_classes=N,
    )
    seen = {}  # the labels fit got for each batch index, epoch after epoch

    class Recorded(type(batches)):
        def __getitem__(self, index):
            images, labels = super().__getitem__(index)
            seen.setdefault(index, []).append(labels.tobytes())
            return images, labels

    batches.__class__ = Recorded
    history = model.fit(batches, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert np.all(np.isfinite(history.history["loss"]))
    # fit takes the batches in an order of its own, and may look at one first; each
    # epoch's MixUp weights are new, so each batch came in at least 3 versions.
    assert sorted(seen) == [0, 1]
    assert all(len(set(versions)) >= 3 for versions in seen.values())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"x": np.zeros((4, 6, 7))}, r"`x`.*\(4, 6, 7\).*channel axis"),
        ({"y": np.arange(3)}, r"`y`.*N = len\(x\) = 16.*\(3,\)"),
        ({"y": np.arange(N) + 1, "mixup_alpha": 0.2, "num_classes": N}, r"\[16\]"),
        ({"y": np.arange(N) - 1.5, "mixup_alpha": 0.2, "num_classes": N}, "integer"),
        ({"mixup_alpha": 0.2}, "num_classes"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"augment_batch_size": 0}, "augment_batch_size=0"),
        ({"shuffle": "yes"}, "shuffle='yes'"),
        ({"flip": "diagonal"}, "flip='diagonal'"),
        ({"crop": (7, 7)}, r"crop=\(7, 7\).*6 x 7"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_arguments(kwargs, words):
    arguments = {"x": distinct_images(), "y": np.arange(N), **kwargs}
    with pytest.raises(ValueError, match=words):
        augmented_batches(**arguments)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="on TensorFlow the experiment keeps its tf.data pipeline (test_augment)",
)
@pytest.mark.parametrize("technique", ["mixup", "cutmix", "augmentation"])
def test_regularize_training_batches_off_tensorflow(technique):
    x = distinct_images(shape=(8, 8, 1))
    batches = regularize._training_data(x, np.arange(N), technique, N, 4, seed=0)
    assert isinstance(batches, keras.utils.PyDataset) and len(batches) == 4
    images, labels = epoch(batches)
    if technique == "mixup":
        check_mixup(x, images, labels)
    elif technique == "cutmix":
        check_cutmix(x, images, labels)
    else:  # rotation and zoom change pixels, never labels
        np.testing.assert_array_equal(np.sort(labels.argmax(axis=1)), np.arange(N))
        np.testing.assert_array_equal(labels.max(axis=1), 1.0)
        assert not np.allclose(images, x[labels.argmax(axis=1)])
