"""keras_optnotes.data: offline datasets, splits, and the Keras-cache loaders (no network)."""

import pickle
import urllib.error

import numpy as np
import pytest

from keras_optnotes import data


def _rows(x, y):
    """Samples as sorted rows of (flattened input, label), to compare as multisets."""
    table = np.concatenate([x.reshape(len(x), -1), y.reshape(-1, 1)], axis=1)
    return table[np.lexsort(table.T[::-1])]


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt to download fails as it would offline."""
    from keras.src.utils import file_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)


def test_names():
    assert data.DATASETS == ("digits", "spirals", "waveforms", "mnist", "cifar10")
    assert set(data.OFFLINE_DATASETS) < set(data.DATASETS)


def test_digits_are_sklearn_digits_scaled_and_split():
    from sklearn.datasets import load_digits

    raw = load_digits()
    split = data.load("digits", validation_fraction=0.2, seed=0)
    assert split.name == "digits" and split.num_classes == 10
    assert split.x_train.shape == (1438, 8, 8, 1) and split.x_val.shape == (
        359,
        8,
        8,
        1,
    )
    assert split.input_shape == (8, 8, 1)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.x_train.min() == 0.0 and split.x_train.max() == 1.0
    # Train and validation together are exactly sklearn's 1797 images / 16, labels kept.
    x = np.concatenate([split.x_train, split.x_val])
    y = np.concatenate([split.y_train, split.y_val])
    expected = _rows((raw.data / 16.0).astype(np.float32), raw.target)
    np.testing.assert_array_equal(_rows(x, y), expected)


def test_split_depends_on_seed_only():
    a = data.load("digits", seed=1)
    b = data.digits(seed=1)
    c = data.load("digits", seed=2)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_val, c.y_val)


def test_spirals_without_noise_lie_on_their_arm():
    num_classes, turns = 4, 1.5
    split = data.spirals(num_samples=400, num_classes=num_classes, noise=0.0)
    x = np.concatenate([split.x_train, split.x_val]).astype(np.float64)
    y = np.concatenate([split.y_train, split.y_val])
    assert x.shape == (400, 2) and np.bincount(y).tolist() == [100] * 4
    # Arm k: r = s, angle = 2π·turns·s + 2πk/K (mod 2π).
    r = np.hypot(x[:, 0], x[:, 1])
    angle = np.arctan2(x[:, 1], x[:, 0])
    residual = angle - 2 * np.pi * turns * r - 2 * np.pi * y / num_classes
    wrapped = np.angle(np.exp(1j * residual))
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-5)
    assert r.max() <= 1.0 + 1e-6


def test_spirals_noise_is_the_documented_standard_deviation():
    clean = data.spirals(num_samples=4000, num_classes=3, noise=0.0, seed=5)
    noisy = data.spirals(num_samples=4000, num_classes=3, noise=1.0, seed=5)
    # Same seed: same s and labels, the noise is drawn after them.
    offsets = noisy.x_train.astype(np.float64) - clean.x_train
    assert abs(offsets.std() - 0.1) < 0.005


def test_waveforms_shapes_and_templates():
    split = data.waveforms(num_samples=200, num_classes=10, length=40, noise=0.0)
    x = np.concatenate([split.x_train, split.x_val])
    y = np.concatenate([split.y_train, split.y_val])
    assert x.shape == (200, 40) and np.bincount(y).tolist() == [20] * 10
    for signal, label in zip(x, y, strict=True):
        support = np.flatnonzero(np.abs(signal) > 1e-7)
        width = support[-1] - support[0] + 1
        assert width <= 20  # at most length / 2 points
        if label == 0:  # a bump: non-negative, peak amplitude in [0.7, 1.3]
            assert signal.min() >= 0 and 0.6 < signal.max() <= 1.3
        if label == 1:  # a dip
            assert signal.max() <= 0 and -1.3 <= signal.min() < -0.6
        if label == 7:  # a ramp: increasing on its support
            assert np.all(np.diff(signal[support[0] : support[-1] + 1]) > 0)


def test_waveforms_noise_level():
    clean = data.waveforms(num_samples=500, noise=0.0, seed=3)
    noisy = data.waveforms(num_samples=500, noise=0.5, seed=3)
    residual = noisy.x_train.astype(np.float64) - clean.x_train
    # White noise (σ = 0.5) plus a linear baseline with slope σ_b = 0.25 over t ∈ [-1, 1]
    # (mean t² = (L + 1) / (3 (L − 1)) on the grid).
    length = 40
    expected = np.sqrt(0.5**2 + 0.25**2 * (length + 1) / (3 * (length - 1)))
    assert abs(residual.std() - expected) < 0.02


def test_max_samples_and_options():
    split = data.load("spirals", max_samples=40, num_classes=2, seed=0)
    assert len(split.x_train) == 40 and len(split.x_val) == 10
    assert split.num_classes == 2


def test_corrupt_labels_changes_exactly_the_share_asked_to_other_classes():
    labels = np.repeat(np.arange(10), 100)  # 1000 labels, 100 per class
    original = labels.copy()
    noisy = data.corrupt_labels(labels, 0.2, 10, seed=3)
    np.testing.assert_array_equal(labels, original)  # the input is not modified
    changed = noisy != labels
    assert changed.sum() == 200  # round(0.2 * 1000), and never the same class
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() <= 9
    # The new classes are uniform over the 9 others: each (true, new) pair of the
    # 90 possible is expected 200 / 90 = 2.2 times; a chi-square test on the
    # offsets (new - true) mod 10, 9 cells of 22.2 expected, at p = 0.001.
    offsets = (noisy[changed] - labels[changed]) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0
    chi2 = ((counts[1:] - 200 / 9) ** 2 / (200 / 9)).sum()
    assert chi2 < 26.12  # the 0.999 quantile of chi-square with 8 degrees of freedom
    # Seeded: the same call gives the same labels, another seed other ones.
    np.testing.assert_array_equal(data.corrupt_labels(labels, 0.2, 10, seed=3), noisy)
    assert (data.corrupt_labels(labels, 0.2, 10, seed=4) != noisy).any()
    np.testing.assert_array_equal(data.corrupt_labels(labels, 0.0, 10), labels)
    assert (data.corrupt_labels(labels, 1.0, 10) != labels).all()
    assert (
        data.corrupt_labels(np.array([0, 1, 0, 1]), 0.5, 2, seed=0) != [0, 1, 0, 1]
    ).sum() == 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: data.load("imagenet"), r"'imagenet'.*digits, spirals, waveforms"),
        (lambda: data.load("digits", noise=0.1), r"noise.*accepted: none"),
        (lambda: data.load("spirals", validation_fraction=1.0), r"validation_fraction"),
        (lambda: data.load("spirals", validation_fraction="a"), r"validation_fraction"),
        (lambda: data.spirals(num_classes=1), r"num_classes.*>= 2.*1"),
        (lambda: data.spirals(noise=-1), r"noise.*-1"),
        (lambda: data.waveforms(num_classes=11), r"num_classes.*11"),
        (lambda: data.waveforms(length=8), r"length.*8"),
        (lambda: data.load("spirals", max_samples=0), r"max_samples.*0"),
        (lambda: data.load("spirals", seed=-1), r"seed.*>= 0.*seed=-1"),
        (lambda: data.load("digits", seed="a"), r"seed.*>= 0.*seed='a'"),
        (lambda: data.waveforms(seed=1.5), r"seed=1.5"),
        (lambda: data.spirals(seed=True), r"seed=True"),
        (lambda: data.corrupt_labels([0, 1], 0.5, 2, seed=-2), r"seed=-2"),
        (lambda: data.corrupt_labels([0, 1], -0.1, 2), r"fraction.*\[0.0, 1.0\].*-0.1"),
        (lambda: data.corrupt_labels([0, 1], 0.5, 1), r"num_classes.*>= 2.*1"),
        (lambda: data.corrupt_labels([0, 3], 0.5, 3), r"labels.*\[0, 3\).*\[0, 3\]"),
        (lambda: data.corrupt_labels([0.0, 1.0], 0.5, 2), r"labels.*integer.*float"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mnist_reads_the_keras_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    (tmp_path / "datasets").mkdir()
    np.savez(
        tmp_path / "datasets" / "mnist.npz",
        x_train=images,
        y_train=labels,
        x_test=images[:2],
        y_test=labels[:2],
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    split = data.load("mnist", validation_fraction=0.25)
    assert split.x_train.shape == (15, 28, 28, 1) and split.x_val.shape == (
        5,
        28,
        28,
        1,
    )
    x = np.concatenate([split.x_train, split.x_val])
    y = np.concatenate([split.y_train, split.y_val])
    np.testing.assert_array_equal(
        _rows(x, y), _rows((images / 255.0).astype(np.float32), labels)
    )


def _write_cifar_batch(path, images_chw, labels):
    batch = {b"data": images_chw.reshape(len(images_chw), -1), b"labels": labels}
    with open(path, "wb") as file:
        pickle.dump(batch, file)


def test_cifar10_reads_the_keras_cache(tmp_path, monkeypatch):
    folder = (
        tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    )
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    for i in range(5):
        labels = [2 * i, 2 * i + 1]
        _write_cifar_batch(
            folder / f"data_batch_{i + 1}", images[2 * i : 2 * i + 2], labels
        )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    split = data.cifar10(validation_fraction=0.2)
    assert split.x_train.shape == (8, 32, 32, 3) and split.num_classes == 10
    x = np.concatenate([split.x_train, split.x_val])
    y = np.concatenate([split.y_train, split.y_val])
    # Sample with label k is images[k]; channel-last pixel (r, c, ch) = row[ch, r, c].
    for sample, label in zip(x, y, strict=True):
        np.testing.assert_allclose(
            sample[5, 7], images[label, :, 5, 7] / 255.0, rtol=1e-6
        )
        np.testing.assert_allclose(sample[..., 2], images[label, 2] / 255.0, rtol=1e-6)


def test_cifar10_batches_refuse_arbitrary_pickles(tmp_path, monkeypatch):
    folder = (
        tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    )
    folder.mkdir(parents=True)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as file:
            pickle.dump(
                {b"data": np.zeros((1, 3072)), b"labels": [pytest.raises]}, file
            )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.cifar10()


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_without_the_file_names_the_offline_datasets(
    name, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(data.DatasetUnavailableError) as error:
        data.load(name)
    message = str(error.value)
    assert name in message and "could not be downloaded" in message
    assert "digits, spirals, waveforms" in message
    assert str(tmp_path) in message
    # The failed download left no partial file behind.
    leftovers = [p for p in (tmp_path / "datasets").rglob("*") if p.is_file()]
    assert leftovers == []
