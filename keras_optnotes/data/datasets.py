"""Datasets for the notes' experiments, as NumPy arrays split into train and validation.

Three of them need no network: `digits` (the real 8×8 handwritten digits that ship
inside scikit-learn), and two that the package generates, `spirals` (2-D points, for
decision boundaries) and `waveforms` (1-D signals in the style of MNIST-1D, for fast
generalization experiments). `mnist` and `cifar10` go through the Keras download cache
for users who have a network; without one, and without the file on disk, they raise
`DatasetUnavailableError`, which names the offline datasets.

Every loader returns a `Split`: the samples are shuffled with `seed` and the last
`validation_fraction` of them become the validation set. Labels are integer class ids.

Example:

>>> from keras_optnotes import data
>>> split = data.load("spirals", num_classes=3, seed=0)
>>> split.x_train.shape, split.num_classes
((1600, 2), 3)
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_optnotes.checks import check_in_range, check_integer

OFFLINE_DATASETS = ("digits", "spirals", "waveforms")
DATASETS = (*OFFLINE_DATASETS, "mnist", "cifar10")


class DatasetUnavailableError(OSError):
    """A dataset is neither on disk nor downloadable (no network)."""


@dataclass(frozen=True, eq=False)
class Split:
    """A dataset split into training and validation arrays.

    Attributes:
        x_train: training inputs, `float32`.
        y_train: training labels, `int64` class ids in `[0, num_classes)`.
        x_val: validation inputs, `float32`.
        y_val: validation labels, `int64`.
        num_classes: number of classes.
        name: the dataset's name, one of `DATASETS`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. `(8, 8, 1)` for digits."""
        return tuple(self.x_train.shape[1:])

    def flattened(self) -> Split:
        """The same split with every input flattened to a vector, for an MLP.

        Example:

        >>> split = load("digits").flattened()  # doctest: +SKIP
        >>> split.input_shape  # doctest: +SKIP
        (64,)
        """
        return dataclasses.replace(
            self,
            x_train=self.x_train.reshape(len(self.x_train), -1),
            x_val=self.x_val.reshape(len(self.x_val), -1),
        )


def corrupt_labels(
    labels: np.ndarray, fraction: float, num_classes: int, *, seed: int = 0
) -> np.ndarray:
    """A copy of `labels` with a given share of them replaced by a wrong class.

    Exactly `round(fraction * len(labels))` samples, drawn without replacement, get a
    label drawn uniformly from the `num_classes - 1` classes other than their own
    (symmetric label noise, the corruption of Zhang et al. 2017 and Arpit et al. 2017
    without the draws that land on the true class). Noisy labels give a network
    something to overfit that does not generalize: fitting them is memorization.

    Args:
        labels: integer class ids in `[0, num_classes)`, shape `(n,)`.
        fraction: share of the samples to corrupt, in [0, 1].
        num_classes: number of classes, at least 2.
        seed: seed of which samples are corrupted and of their new classes.

    Returns:
        A new `int64` array; `labels` is not modified.

    Example:

    >>> corrupt_labels(np.array([0, 1, 2, 3]), 0.5, 4, seed=0) != [0, 1, 2, 3]
    array([ True, False,  True, False])
    """
    fraction = check_in_range("fraction", fraction, 0.0, 1.0)
    num_classes = check_integer("num_classes", num_classes, 2)
    seed = check_integer("seed", seed, 0)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "Argument `labels` must be a 1-D array of integer class ids. Received: "
            f"labels with dtype {labels.dtype} and shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Argument `labels` must hold class ids in [0, {num_classes}). Received: "
            f"labels in [{labels.min()}, {labels.max()}]"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(labels))[: int(round(fraction * len(labels)))]
    corrupted = labels.astype(np.int64)  # a copy
    # An offset in [1, num_classes) never maps a class onto itself.
    offsets = rng.integers(1, num_classes, size=len(chosen))
    corrupted[chosen] = (corrupted[chosen] + offsets) % num_classes
    return corrupted


def _check_fraction(validation_fraction: float) -> float:
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            "`validation_fraction` must be a number in (0, 1); "
            f"received {validation_fraction!r}."
        )
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(
            "`validation_fraction` must be in the open interval (0, 1); "
            f"received {validation_fraction!r}."
        )
    return float(validation_fraction)


def _check_noise(noise: float) -> float:
    if isinstance(noise, bool) or not isinstance(
        noise, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"`noise` must be a number >= 0; received {noise!r}.")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise` must be a finite number >= 0; received {noise!r}.")
    return float(noise)


def _split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    num_classes: int,
    validation_fraction: float,
    seed: int,
) -> Split:
    """Shuffles `(x, y)` with `seed` and cuts off the validation tail."""
    validation_fraction = _check_fraction(validation_fraction)
    order = np.random.default_rng(seed).permutation(len(x))
    num_val = max(1, int(round(validation_fraction * len(x))))
    if num_val >= len(x):
        raise ValueError(
            f"`validation_fraction`={validation_fraction} leaves no training samples "
            f"out of {len(x)}."
        )
    train, val = order[:-num_val], order[-num_val:]
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    return Split(
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        num_classes=int(num_classes),
        name=name,
    )


def digits(*, validation_fraction: float = 0.2, seed: int = 0) -> Split:
    """The 1,797 real 8×8 handwritten digits that ship inside scikit-learn.

    Images are returned as `(N, 8, 8, 1)` `float32` in `[0, 1]` (the raw grey levels
    0..16 divided by 16); labels are the digits 0..9. No network is needed, but
    scikit-learn is: it is the package's `data` extra.

    Args:
        validation_fraction: share of the samples held out for validation, in (0, 1).
        seed: seed of the shuffle that decides the split.

    Returns:
        A `Split` named `"digits"` with `num_classes=10`.

    References:
        Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
        Learning Repository, 1998.
    """
    seed = check_integer("seed", seed, 0)
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "The `digits` dataset ships inside scikit-learn, which is not installed: "
            'pip install "keras-optnotes[data]"'
        ) from error
    bunch = load_digits()
    images = (bunch.images / 16.0)[..., np.newaxis]
    return _split(
        images,
        bunch.target,
        name="digits",
        num_classes=10,
        validation_fraction=validation_fraction,
        seed=seed,
    )


def spirals(
    num_samples: int = 2000,
    num_classes: int = 3,
    noise: float = 0.2,
    *,
    turns: float = 1.5,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Interleaved 2-D spirals, one arm per class, for decision-boundary plots.

    Arm k (k = 0..K−1) is the curve r(s) = s, φ(s) = 2π·turns·s + 2πk/K for s in
    [0, 1]; a sample draws s uniformly, takes the point (r cos φ, r sin φ) and adds
    isotropic Gaussian noise of standard deviation `noise` · 0.1 (so `noise=1` spreads a
    point over about the gap between two arms when K = 3).

    Args:
        num_samples: total number of points (split evenly over the classes).
        num_classes: number of arms, at least 2.
        noise: noise level, >= 0.
        turns: how many times each arm winds around the origin.
        validation_fraction: share held out for validation, in (0, 1).
        seed: seed of the generator and of the split.

    Returns:
        A `Split` named `"spirals"`; inputs are `(N, 2)` `float32`.

    Example:

    >>> split = spirals(num_samples=300, num_classes=2, noise=0.0)
    >>> split.x_train.shape
    (240, 2)
    """
    num_samples = check_integer("num_samples", num_samples, 2)
    num_classes = check_integer("num_classes", num_classes, 2)
    noise = _check_noise(noise)
    if not (isinstance(turns, (int, float)) and math.isfinite(turns) and turns > 0):
        raise ValueError(f"`turns` must be a finite number > 0; received {turns!r}.")
    seed = check_integer("seed", seed, 0)
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % num_classes
    s = rng.uniform(0.0, 1.0, size=num_samples)
    phi = 2 * np.pi * turns * s + 2 * np.pi * labels / num_classes
    points = np.stack([s * np.cos(phi), s * np.sin(phi)], axis=1)
    points += rng.normal(0.0, 0.1 * noise, size=points.shape)
    return _split(
        points,
        labels,
        name="spirals",
        num_classes=num_classes,
        validation_fraction=validation_fraction,
        seed=seed,
    )


def _waveform_templates(num_classes: int, width: int) -> np.ndarray:
    """Ten fixed shapes on `width` points, unit peak: classes 0..num_classes-1."""
    u = np.linspace(0.0, 1.0, width)
    shapes = [
        np.sin(np.pi * u),  # 0: one bump
        -np.sin(np.pi * u),  # 1: one dip
        np.sin(2 * np.pi * u),  # 2: up then down
        -np.sin(2 * np.pi * u),  # 3: down then up
        np.sin(3 * np.pi * u),  # 4: up, down, up
        1.0 - 2.0 * np.abs(2.0 * u - 1.0),  # 5: triangle
        np.where(u < 0.5, 1.0, -1.0),  # 6: square step down
        2.0 * u - 1.0,  # 7: ramp up
        np.exp(-(((u - 0.25) / 0.08) ** 2)) + np.exp(-(((u - 0.75) / 0.08) ** 2)),
        # 8: two narrow peaks
        np.sign(np.sin(4 * np.pi * u)) * (1.0 - u),  # 9: decaying square wave
    ]
    return np.stack(shapes[:num_classes]).astype(np.float64)


def waveforms(
    num_samples: int = 4000,
    num_classes: int = 10,
    length: int = 40,
    noise: float = 0.25,
    *,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """1-D signals in the style of MNIST-1D: a class template, shifted, scaled, noisy.

    Each class has a fixed template (bump, dip, one sine period, ..., ten shapes in
    all). A sample takes its class' template drawn on a random width w in
    [length/4, length/2], multiplies it by an amplitude a ~ U(0.7, 1.3), places it at a
    random offset in a signal of `length` zeros, adds a random linear baseline
    (slope ~ N(0, 0.5·noise) over the signal) and white Gaussian noise of standard
    deviation `noise`. Position, width and baseline vary inside a class, so a small
    MLP has to learn shapes rather than positions; with a few thousand samples it
    overfits visibly, which is what the generalization experiments need. The
    templates are this package's own, not those of the MNIST-1D paper.

    Args:
        num_samples: total number of signals (split evenly over the classes).
        num_classes: number of classes, 2..10.
        length: number of points in a signal, at least 16.
        noise: standard deviation of the white noise, >= 0.
        validation_fraction: share held out for validation, in (0, 1).
        seed: seed of the generator and of the split.

    Returns:
        A `Split` named `"waveforms"`; inputs are `(N, length)` `float32`.

    References:
        Greydanus, "Scaling down Deep Learning" (MNIST-1D), arXiv:2011.14439, 2020.
    """
    num_samples = check_integer("num_samples", num_samples, 2)
    num_classes = check_integer("num_classes", num_classes, 2)
    if num_classes > 10:
        raise ValueError(f"`num_classes` must be in [2, 10]; received {num_classes}.")
    length = check_integer("length", length, 16)
    noise = _check_noise(noise)
    seed = check_integer("seed", seed, 0)
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % num_classes
    signals = np.zeros((num_samples, length))
    t = np.linspace(-1.0, 1.0, length)
    for i, label in enumerate(labels):
        width = int(rng.integers(length // 4, length // 2 + 1))
        offset = int(rng.integers(0, length - width + 1))
        amplitude = rng.uniform(0.7, 1.3)
        template = _waveform_templates(num_classes, width)[label]
        signals[i, offset : offset + width] = amplitude * template
    signals += rng.normal(0.0, 0.5 * noise, size=(num_samples, 1)) * t
    signals += rng.normal(0.0, noise, size=signals.shape)
    return _split(
        signals,
        labels,
        name="waveforms",
        num_classes=num_classes,
        validation_fraction=validation_fraction,
        seed=seed,
    )


# Where `keras.datasets` fetches from, and the SHA-256 it checks after a download.
_MNIST_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_MNIST_HASH = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_CIFAR10_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_HASH = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def keras_cache_dir() -> str:
    """The folder that holds `datasets/`: `$KERAS_HOME`, else `~/.keras`.

    Read at call time (Keras reads `KERAS_HOME` once, when it is imported).
    """
    home = os.environ.get("KERAS_HOME")
    if home:
        return os.path.expanduser(home)
    return os.path.join(os.path.expanduser("~"), ".keras")


def _fetch(name: str, fname: str, origin: str, file_hash: str, extract: bool) -> str:
    """Downloads into the Keras cache; a failure becomes `DatasetUnavailableError`."""
    import keras

    try:
        return keras.utils.get_file(
            fname=fname,
            origin=origin,
            file_hash=file_hash,
            extract=extract,
            cache_dir=keras_cache_dir(),
        )
    except Exception as error:  # noqa: BLE001 - get_file raises bare Exception
        raise DatasetUnavailableError(
            f"The `{name}` dataset is not in the Keras cache "
            f"({os.path.join(keras_cache_dir(), 'datasets')}) and could not be "
            f"downloaded ({error}). Datasets that need no network: "
            f"{', '.join(OFFLINE_DATASETS)}."
        ) from error


def mnist(*, validation_fraction: float = 0.2, seed: int = 0) -> Split:
    """MNIST's 60,000 training digits, through the Keras download cache.

    Reads `$KERAS_HOME/datasets/mnist.npz` (the file `keras.datasets.mnist.load_data`
    writes) when it is there, as it is; otherwise downloads it from Keras' mirror,
    checking its SHA-256. The official test set is left untouched: the validation set
    is cut from the training images. Images are `(N, 28, 28, 1)` `float32` in [0, 1].

    Args:
        validation_fraction: share held out for validation, in (0, 1).
        seed: seed of the shuffle that decides the split.

    Returns:
        A `Split` named `"mnist"` with `num_classes=10`.

    Raises:
        DatasetUnavailableError: the file is absent and cannot be downloaded.

    References:
        LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
        recognition", Proc. IEEE, 1998.
    """
    seed = check_integer("seed", seed, 0)
    path = os.path.join(keras_cache_dir(), "datasets", "mnist.npz")
    if not os.path.exists(path):
        path = _fetch("mnist", "mnist.npz", _MNIST_ORIGIN, _MNIST_HASH, extract=False)
    with np.load(path, allow_pickle=False) as archive:
        images, labels = archive["x_train"], archive["y_train"]
    return _split(
        images[..., np.newaxis] / 255.0,
        labels,
        name="mnist",
        num_classes=10,
        validation_fraction=validation_fraction,
        seed=seed,
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: dicts of bytes, lists and NumPy arrays, nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a batch")


def _cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as file:
        batch = _ArrayUnpickler(file, encoding="bytes").load()
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"])


def cifar10(*, validation_fraction: float = 0.2, seed: int = 0) -> Split:
    """CIFAR-10's 50,000 training images, through the Keras download cache.

    Reads the five `data_batch_*` files from
    `$KERAS_HOME/datasets/cifar-10-batches-py-target/cifar-10-batches-py/` (where
    `keras.datasets.cifar10.load_data` extracts them) when they are there; otherwise
    downloads and extracts the archive, checking its SHA-256. The validation set is
    cut from the training images. Images are `(N, 32, 32, 3)` `float32` in [0, 1].

    Args:
        validation_fraction: share held out for validation, in (0, 1).
        seed: seed of the shuffle that decides the split.

    Returns:
        A `Split` named `"cifar10"` with `num_classes=10`.

    Raises:
        DatasetUnavailableError: the files are absent and cannot be downloaded.

    References:
        Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
    """
    seed = check_integer("seed", seed, 0)
    folder = os.path.join(keras_cache_dir(), "datasets", "cifar-10-batches-py-target")
    if not os.path.exists(os.path.join(folder, "cifar-10-batches-py", "data_batch_5")):
        folder = _fetch(
            "cifar10",
            "cifar-10-batches-py-target",
            _CIFAR10_ORIGIN,
            _CIFAR10_HASH,
            extract=True,
        )
    batches = [
        _cifar_batch(os.path.join(folder, "cifar-10-batches-py", f"data_batch_{i}"))
        for i in range(1, 6)
    ]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _split(
        images / 255.0,
        labels,
        name="cifar10",
        num_classes=10,
        validation_fraction=validation_fraction,
        seed=seed,
    )


_LOADERS: dict[str, Callable[..., Split]] = {
    "digits": digits,
    "spirals": spirals,
    "waveforms": waveforms,
    "mnist": mnist,
    "cifar10": cifar10,
}


def load(
    name: str,
    *,
    validation_fraction: float = 0.2,
    seed: int = 0,
    max_samples: int | None = None,
    **options,
) -> Split:
    """Loads a dataset by name.

    Args:
        name: one of `DATASETS` (case-insensitive).
        validation_fraction: share held out for validation, in (0, 1).
        seed: seed of the generator (for generated sets) and of the split.
        max_samples: when given, keep only the first `max_samples` training and the
            first `max_samples // 4` (at least one) validation samples of the split,
            for quick runs.
        **options: the dataset's own arguments, e.g. `num_classes=` and `noise=` for
            `spirals` and `waveforms`.

    Returns:
        A `Split`.

    Raises:
        ValueError: an unknown name or option, or an argument out of range.
        DatasetUnavailableError: `mnist` / `cifar10` offline and not on disk.
        ImportError: `digits` without scikit-learn.
    """
    key = str(name).lower() if isinstance(name, str) else name
    if key not in _LOADERS:
        raise ValueError(
            f"Unknown dataset {name!r}; accepted names: {', '.join(DATASETS)}."
        )
    loader = _LOADERS[key]
    accepted = [
        parameter
        for parameter in inspect.signature(loader).parameters
        if parameter not in ("validation_fraction", "seed")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Dataset {key!r} does not accept the option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}."
        )
    if max_samples is not None:
        max_samples = check_integer("max_samples", max_samples, 1)
    split = loader(validation_fraction=validation_fraction, seed=seed, **options)
    if max_samples is None:
        return split
    num_val = max(1, max_samples // 4)
    return Split(
        x_train=split.x_train[:max_samples],
        y_train=split.y_train[:max_samples],
        x_val=split.x_val[:num_val],
        y_val=split.y_val[:num_val],
        num_classes=split.num_classes,
        name=split.name,
    )
