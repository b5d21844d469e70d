# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 — Batch normalization: does it really fix internal covariate shift?
#
# The notes' section "Regularization" (정규화) → "Batch Normalization" (배치 정규화):
# in training each mini-batch is normalized with its own mean and variance, which are
# accumulated by an exponential moving average ("미니배치의 평균과 분산은 지수이동평균을
# 통해 누적시키며 보관한다"), and at inference the accumulated statistics are used
# instead ("추론 과정에서는 … 학습 과정에서 누적시키며 보관하던 평균, 분산을
# 이용한다"). The paper says it solves internal covariate shift, the layers' inputs
# changing their distribution during training, but later papers seem not to agree
# ("논문에서는 internal covariate shift … 를 해결한다고 하였으나 배치 정규화에 관한
# 후속 논문들은 동의하지 않는 분위기라고 한다"); layer, instance and group normalization
# followed ("레이어 정규화, 인스턴스 정규화, 그룹 정규화 등 여러 변형 알고리즘이
# 나왔다").
#
# **The question.** Does batch normalization really fix internal covariate shift — and
# if not, why does it help? Four measurements, one section each below:
#
# 1. training against inference mode: how long the moving statistics lag behind the
#    batch statistics;
# 2. a batch of one in training mode, where batch normalization outputs β whatever
#    the input;
# 3. Santurkar et al. (2018): the smoothness of the loss along the gradient with and
#    without BN, and "noisy BN", which adds covariate shift on purpose;
# 4. batch, layer, instance and group normalization as the batch shrinks to 2 (Wu &
#    He 2018).
#
# **Run it.** `pip install "keras-optnotes[all]" tensorflow`. Set `QUICK = True` below
# for a smoke run of under three minutes (what CI runs); the full run (`QUICK =
# False`, 3 seeds) took the time printed by the last cell, with the package version
# beside it.

# %% tags=["parameters"]
QUICK = False  # True: a smoke run of seconds, what CI runs
SEEDS = None  # report seeds 0 … SEEDS − 1; None: 3 (2 when QUICK)
OUT = "optnotes-report/tutorials"  # where the figures and the numbers are written

# %%
import time
from pathlib import Path

import keras
import numpy as np

from keras_optnotes import data
from keras_optnotes.callbacks import recompute_batch_normalization_statistics
from keras_optnotes.diagnostics import HessianOperator, preserved_weights
from keras_optnotes.experiments import difference, estimate, run_description
from keras_optnotes.experiments.protocol import mean_interval, paired_difference
from keras_optnotes.layers import normalization
from keras_optnotes.report import (
    label_axes,
    markdown_table,
    mean_band,
    new_figure,
    show_markdown,
    write_json,
)

started = time.perf_counter()
out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)
seeds = SEEDS or (2 if QUICK else 3)

# %% [markdown]
# ## The protocol
#
# Seeds 0 … N − 1 fix the split, the weights and the batch order; tables give the mean
# and its 95 % Student-t interval over seeds, "m [lo, hi]"
# (`keras_optnotes.experiments.protocol`); differences between settings are paired by
# seed, and a verdict says "significant" only where the interval of the difference
# excludes 0. The curves of parts 1 and 3 show the mean and a band of ± one standard
# deviation.
#
# What was cut for the time budget: digits, not CIFAR-10 or ImageNet; MLPs of 64 units
# and a two-layer CNN instead of VGG and ResNet-50; 200 steps (part 1), 360 steps
# (part 3, 8 epochs) and 10 epochs on 384 digits (part 4, where batch 2 costs 1,920
# steps per seed and variant); 3 seeds (t-intervals with 2 degrees of freedom are
# wide: t = 4.30); the landscape measured every 10 steps on 4 step sizes; no
# learning-rate sweep (Santurkar et al. also show BN tolerating larger steps).
#
# The building blocks: the MLP 64 → (Dense(64) [→ BN] → ReLU) × depth → 10 on the
# flattened digits, trained by SGD (η = 0.1, batch 32), whose Dense kernels depend on
# the seed and the layer's position only, so that every variant starts from the same
# weights; a pool that restarts one compiled model per architecture instead of
# building a new one for every seed (each new Keras model traces its own train step);
# shuffled whole batches; and the accuracy of one forward pass, which leaves the
# moving statistics as they were.

# %%
LOSS = "sparse_categorical_crossentropy"
SETTINGS = {
    False: {
        "max_samples": None,
        "moving_steps": 200,
        "moving_every": 5,
        "single_steps": 300,
        "santurkar_steps": 360,
        "santurkar_every": 10,
        "variant_samples": 384,
        "variant_epochs": 10,
        "batch_sizes": (32, 8, 2),
    },
    True: {
        "max_samples": 200,
        "moving_steps": 10,
        "moving_every": 5,
        "single_steps": 20,
        "santurkar_steps": 20,
        "santurkar_every": 10,
        "variant_samples": 64,
        "variant_epochs": 1,
        "batch_sizes": (8, 2),
    },
}
WIDTH = 64
LEARNING_RATE = 0.1
BATCH_SIZE = 32
MOMENTA = (0.99, 0.9)
STEP_SIZES = (0.05, 0.1, 0.2, 0.4)
DEEP_LAYERS = 6
PROBE_SAMPLES = 256
VARIANTS = ("none", "batch", "noisy batch")
KINDS = ("none", "batch", "layer", "instance", "group")
BASE_RATE, BASE_BATCH = 0.1, 32

settings = SETTINGS[QUICK]


def dense_network(depth: int, variant: str, seed: int, momentum: float = 0.99):
    """64 → (Dense(WIDTH) [→ BN [→ noise]] → ReLU) × depth → softmax; the Dense
    kernels depend on `seed` and the position only, so every variant starts from the
    same weights. The inputs of the last hidden Dense layer are the model's second
    output (for the covariate-shift probe of part 3, where the noise layer
    `NonStationaryNoise` is defined)."""
    inputs = keras.Input(shape=(64,))
    x = inputs
    for position in range(1, depth + 1):
        if position == depth:
            last_input = x
        x = keras.layers.Dense(
            WIDTH,
            kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + position),
        )(x)
        if variant != "none":
            x = normalization("batch", momentum=momentum)(x)
        if variant == "noisy batch":
            x = NonStationaryNoise(seed * 1000 + 100 + position)(x)
        x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Dense(
        10,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + 99),
    )(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=LOSS,
        metrics=["accuracy"],
        jit_compile=False,  # networks this small train faster without XLA on CPU
    )
    return model, keras.Model(inputs, last_input)


class ModelPool:
    """One compiled model per architecture, restarted for every seed and setting.

    Each new Keras model traces its own train step (about a second of CPU each);
    restarting one model at the initial weights of a fresh build (moving statistics
    included) with a zeroed optimizer gives the same run at the cost of one trace
    per batch shape.
    """

    def __init__(self):
        self.built = {}

    def restart(self, key, build):
        """`build()`'s model (or `(model, *extras)`), or the one kept under `key` set
        to the weights `build()` starts from."""
        fresh = build()
        kept = self.built.setdefault(key, fresh)
        if kept is not fresh:
            model = kept[0] if isinstance(kept, tuple) else kept
            initial = fresh[0] if isinstance(fresh, tuple) else fresh
            model.set_weights(initial.get_weights())
            rate = initial.optimizer.learning_rate
            for variable in model.optimizer.variables:  # the step count, the slots
                variable.assign(keras.ops.zeros_like(variable))
            model.optimizer.learning_rate = rate
        return kept


def batch_order(samples: int, batch_size: int, steps: int, seed: int):
    """`steps` batches of indices: shuffled passes over the samples, whole batches."""
    rng = np.random.default_rng(seed)
    per_epoch = samples // batch_size
    order = np.concatenate(
        [rng.permutation(samples) for _ in range(-(-steps // per_epoch))]
    )
    return order[: steps * batch_size].reshape(steps, batch_size)


def accuracy(model, x, y, training: bool) -> float:
    """Accuracy of one forward pass over all of `x`; in training mode the BN layers
    use the statistics of `x` itself and their moving statistics are left as they
    were."""
    with preserved_weights(model):
        p = keras.ops.convert_to_numpy(model(x, training=training))
    return float(np.mean(np.argmax(p, axis=1) == y))


splits = [
    data.load("digits", seed=seed, max_samples=settings["max_samples"]).flattened()
    for seed in range(seeds)
]
pool = ModelPool()

# %% [markdown]
# ## 1. Training against inference mode
#
# The MLP 64 → (Dense(64) → BN → ReLU) × 2 → 10 on the digits, SGD (η = 0.1, batch
# 32): every 5 steps the validation accuracy in inference mode (Keras' moving
# statistics, momentum 0.99, the default, and 0.9), in training mode (the validation
# set's own batch statistics) and in inference mode after
# `keras_optnotes.callbacks.recompute_batch_normalization_statistics` has set the
# exact training-set statistics, and the relative error of the first BN layer's
# moving mean against those exact statistics. Early in training the moving averages
# still remember their initial values (mean 0, variance 1) and the inference-mode
# network is far worse than the training-mode one; later they agree.


# %%
def moving_statistics(split, seed: int, settings: dict, pool: ModelPool) -> dict:
    """Part 1: training- vs inference-mode accuracy and the moving mean's error, one
    row (step, inference, training mode, recomputed, relative error) per measurement,
    for each momentum."""
    x, y = split.x_train, split.y_train
    batches = batch_order(len(x), BATCH_SIZE, settings["moving_steps"], seed)
    result = {}
    for momentum in MOMENTA:
        keras.utils.set_random_seed(seed)
        model, _ = pool.restart(
            ("moving", momentum), lambda m=momentum: dense_network(2, "batch", seed, m)
        )
        first = next(
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        )
        rows = []
        for step, index in enumerate(batches, start=1):
            model.train_on_batch(x[index], y[index])
            if step % settings["moving_every"] and step != 1:
                continue
            moving = keras.ops.convert_to_numpy(first.moving_mean)
            with preserved_weights(model):
                recompute_batch_normalization_statistics(model, x, batch_size=256)
                exact = keras.ops.convert_to_numpy(first.moving_mean)
                recomputed = accuracy(model, split.x_val, split.y_val, False)
            rows.append(
                (
                    step,
                    accuracy(model, split.x_val, split.y_val, False),
                    accuracy(model, split.x_val, split.y_val, True),
                    recomputed,
                    float(np.linalg.norm(moving - exact) / np.linalg.norm(exact)),
                )
            )
        result[momentum] = np.array(rows)
    return result


def moving_rows(moving: list[dict]) -> dict:
    """For each momentum: the measured steps, the first and the last row's estimates
    over seeds, and the largest mean gap training − inference mode and its step."""
    rows = {}
    for momentum in MOMENTA:
        runs = np.array([m[momentum] for m in moving])
        gap = (runs[:, :, 2] - runs[:, :, 1]).mean(axis=0)  # training − inference
        rows[momentum] = {
            "steps": runs[0, :, 0],
            "first": [estimate(runs[:, 0, c]) for c in range(1, 5)],
            "last": [estimate(runs[:, -1, c]) for c in range(1, 5)],
            "largest_gap": float(gap.max()),
            "largest_gap_step": int(runs[0, int(gap.argmax()), 0]),
        }
    return rows


moving = [
    moving_statistics(split, seed, settings, pool) for seed, split in enumerate(splits)
]
rows = {"moving": moving_rows(moving)}
show_markdown(
    f"{seeds} seeds, digits; tables give the mean and its 95 % Student-t interval "
    'over seeds, "m [lo, hi]".\n\n'
    + markdown_table(
        [
            "BN momentum",
            "after step",
            "inference (moving)",
            "training mode",
            "inference (recomputed)",
            "moving-mean relative error",
        ],
        [
            [momentum, int(r["steps"][i]), *(r[key])]
            for momentum, r in rows["moving"].items()
            for i, key in ((0, "first"), (-1, "last"))
        ],
    )
)

# %% [markdown]
# **How to read the figure.** One panel per momentum: the validation accuracy in
# inference mode with the moving statistics (solid), in training mode (dashed) and in
# inference mode with the exactly recomputed statistics (dotted), against the
# training step. Right: the first BN layer's moving mean against the exact one
# (relative error, log scale).


# %%
def plot_moving(moving: list[dict], path=None):
    """Part 1's curves, one panel per momentum, and the moving mean's error; saved
    to `path` if given."""
    figure = new_figure(figsize=(15, 4.3), layout="constrained")
    *panels, error_axes = figure.subplots(1, len(MOMENTA) + 1)
    columns = (
        (1, "inference mode (moving statistics)", "-"),
        (2, "training mode (the validation set's own statistics)", "--"),
        (3, "inference, statistics recomputed exactly", ":"),
    )
    for axes, momentum in zip(panels, MOMENTA, strict=True):
        runs = np.array([m[momentum] for m in moving])
        for column, text, style in columns:
            mean_band(axes, runs[:, :, 0], runs[:, :, column], label=text, ls=style)
        label_axes(
            axes,
            "training step (batch 32)",
            "validation accuracy",
            f"BN momentum {momentum}: training vs inference mode",
            grid=True,
        )
    for momentum in MOMENTA:
        runs = np.array([m[momentum] for m in moving])
        mean_band(
            error_axes,
            runs[:, :, 0],
            runs[:, :, 4],
            label=f"momentum {momentum}",
            log=True,
        )
    label_axes(
        error_axes,
        "training step (batch 32)",
        "‖moving mean − exact mean‖ / ‖exact mean‖",
        "First BN layer: moving vs exact mean",
        log="y",
        grid=True,
    )
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_moving(moving, out / "08_train_vs_inference.png")

# %% [markdown]
# ## 2. A batch of one in training mode
#
# The batch mean is the sample itself and the batch variance is 0, so
# $\hat x = (x - x)/\sqrt{0 + \epsilon} = 0$ and the output is β whatever the input:
# shown on a BN layer with random γ, β for several inputs. Then the MLP trained with
# batch 1: its training-mode output does not depend on its input, the gradient
# reaching the first kernel is 0, the network can learn at most the label
# frequencies, and the moving variance decays towards 0 (momentum$^\text{steps}$), so
# that inference divides by $\sqrt\epsilon$.


# %%
def single_sample_layer(seed: int = 0, calls: int = 5) -> dict:
    """Part 2a: a BN layer with random γ, β in training mode on batches of one.

    Each call is one sample: the batch variance is 0, so the moving variance after k
    calls is exactly momentum^k (from its initial 1) and the output is β."""
    rng = np.random.default_rng(seed)
    layer = normalization("batch")
    layer.build((None, 16))
    gamma = rng.uniform(0.5, 2.0, 16).astype(np.float32)
    beta = rng.normal(size=16).astype(np.float32)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    inputs = rng.normal(scale=3.0, size=(calls, 1, 16)).astype(np.float32)
    outputs = np.stack(
        [keras.ops.convert_to_numpy(layer(x, training=True))[0] for x in inputs]
    )
    # TensorFlow computes BN as x·s + (β − μ·s), s = γ/√(σ² + ε): with μ = x that is
    # β up to the rounding of x·s, a few units in the last place of the largest |x·s|.
    scale = gamma / np.sqrt(np.float32(layer.epsilon))
    bound = float(4 * np.spacing(np.float32(np.max(np.abs(inputs[:, 0] * scale)))))
    return {
        "inputs": inputs[:, 0],
        "outputs": outputs,
        "beta": beta,
        "max_difference_from_beta": float(np.max(np.abs(outputs - beta))),
        "rounding_bound": bound,
        "moving_variance": keras.ops.convert_to_numpy(layer.moving_variance).astype(
            np.float64
        ),
        "expected_moving_variance": float(layer.momentum) ** calls,
        "calls": calls,
    }


def single_sample_training(split, seed: int, steps: int) -> dict:
    """Part 2b: the two-layer BN MLP trained with batches of one sample."""
    keras.utils.set_random_seed(seed)
    model, _ = dense_network(2, "batch", seed)
    x, y = split.x_train, split.y_train
    order = batch_order(len(x), 1, steps, seed)
    losses = [float(model.train_on_batch(x[i], y[i])[0]) for i in order]
    first = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    with preserved_weights(model):
        outputs = np.concatenate(
            [
                keras.ops.convert_to_numpy(model(x[i : i + 1], training=True))
                for i in range(20)
            ]
        )
        operator = HessianOperator(model, (x[:1], y[:1]), loss=LOSS, training=True)
        _, gradient = operator.loss_and_gradient()
    pieces = operator.unflatten(gradient)
    frequencies = np.bincount(split.y_train, minlength=10) / len(split.y_train)
    return {
        "steps": steps,
        "train_loss_last": float(np.mean(losses[-50:])),
        "label_entropy": float(-np.sum(frequencies * np.log(frequencies))),
        "first_kernel_gradient": float(np.linalg.norm(pieces[0])),
        "output_bias_gradient": float(np.linalg.norm(pieces[-1])),
        "output_spread_over_inputs": float(np.max(np.std(outputs, axis=0))),
        "moving_variance_mean": float(
            np.mean(keras.ops.convert_to_numpy(first.moving_variance))
        ),
        "momentum_power": float(first.momentum) ** steps,
        "val_accuracy": accuracy(model, split.x_val, split.y_val, False),
        "majority_accuracy": float(
            np.mean(split.y_val == np.argmax(np.bincount(split.y_train)))
        ),
    }


layer = single_sample_layer()
single = single_sample_training(splits[0], 0, settings["single_steps"])
show_markdown(
    "Inputs (first 4 features of each of the single-sample batches) and outputs "
    "against β:\n\n"
    + markdown_table(
        ["", *(f"feature {j}" for j in range(4))],
        [
            *(
                [f"input {i}", *layer["inputs"][i, :4]]
                for i in range(len(layer["inputs"]))
            ),
            *(
                [f"output {i}", *layer["outputs"][i, :4]]
                for i in range(len(layer["outputs"]))
            ),
            ["β", *layer["beta"][:4]],
        ],
    )
)

# %% [markdown]
# ## 3. Santurkar et al.: smoothness and noisy BN
#
# A deeper MLP, 64 → (Dense(64) [→ BN] → ReLU) × 6 → 10, SGD η = 0.1, batch 32, the
# same initial weights with and without BN. Every 10 steps, on the training batch of
# that step, the training loss $L$ and its gradient $g$ are measured at $w - s g$ for
# step sizes $s$ from 0.05 to 0.4 (the training step is 0.1): the *loss variation* is
# the range max − min of $L$ over $s$, the *gradient predictiveness* the largest ℓ2
# change $\|\nabla L(w - s g) - g\|$, and the *effective β-smoothness*
# $\max_s \|\nabla L(w - s g) - g\| / \|s g\|$ (their Figure 4).
#
# And their "noisy BN" (their Figure 2): after every BN layer, a random affine map and
# noise redrawn at every training step, $y = a \odot x + n$ with
# $a_j \sim U(0.5, 1.5)$ and $n_{ij} \sim N(m_j, \sigma_j^2)$,
# $m_j \sim U(-1, 1)$, $\sigma_j \sim U(0, 0.5)$ for unit $j$ (identity at
# inference): the next layer's input distribution now moves at every step, more than
# without BN. The covariate shift is measured directly: the inputs of the last hidden
# layer on a fixed probe batch of 256 training digits (in training mode, noise
# included) every 10 steps; the shift is the mean over units of |Δmean| + |Δstd|
# between consecutive measurements. If BN worked by removing covariate shift, noisy BN
# would train like the plain network.


# %%
class NonStationaryNoise(keras.layers.Layer):
    """Santurkar et al.'s "noisy BN" perturbation, placed after a BN layer.

    In training, for unit j: y_ij = a_j x_ij + n_ij with n_ij ~ N(m_j, σ_j²), where
    a_j ~ U(0.5, 1.5), m_j ~ U(−1, 1) and σ_j ~ U(0, 0.5) are drawn again at every call
    (every training step): a non-zero mean, non-unit variance, non-stationary shift of
    the distribution the next layer sees. At inference it is the identity.
    """

    def __init__(self, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        units = (x.shape[-1],)
        scale = keras.random.uniform(units, 0.5, 1.5, seed=self.generator)
        mean = keras.random.uniform(units, -1.0, 1.0, seed=self.generator)
        spread = keras.random.uniform(units, 0.0, 0.5, seed=self.generator)
        noise = keras.random.normal(keras.ops.shape(x), seed=self.generator)
        return scale * x + mean + spread * noise


def landscape(model, x, y, loss=LOSS) -> tuple[float, float, float]:
    """Santurkar et al.'s three measurements along −g at the current weights, on one
    batch in training mode: (loss range, largest ‖Δg‖, effective β-smoothness)."""
    with preserved_weights(model):
        operator = HessianOperator(model, (x, y), loss=loss, training=True)
        start = operator.flatten(operator.get_weights())
        loss, gradient = operator.loss_and_gradient()
        losses, changes, ratios = [loss], [], []
        norm = np.linalg.norm(gradient)
        for size in STEP_SIZES:
            operator.set_flat_weights(start - size * gradient)
            moved_loss, moved = operator.loss_and_gradient()
            losses.append(moved_loss)
            change = float(np.linalg.norm(moved - gradient))
            changes.append(change)
            ratios.append(change / (size * norm) if norm > 0 else np.nan)
    return float(np.ptp(losses)), max(changes), max(ratios)


def santurkar(split, seed: int, settings: dict, pool: ModelPool) -> dict:
    """Part 3: the deep MLP without BN, with BN and with noisy BN."""
    x, y = split.x_train, split.y_train
    probe_x = x[:PROBE_SAMPLES]
    steps, every = settings["santurkar_steps"], settings["santurkar_every"]
    batches = batch_order(len(x), BATCH_SIZE, steps, seed)
    result = {}
    for variant in VARIANTS:
        keras.utils.set_random_seed(seed)
        model, probe = pool.restart(
            ("deep", variant), lambda v=variant: dense_network(DEEP_LAYERS, v, seed)
        )
        losses, measured, statistics = [], [], []
        for step, index in enumerate(batches):
            if step % every == 0:
                if variant != "noisy batch":  # its loss is random at fixed weights
                    measured.append((step, *landscape(model, x[index], y[index])))
                with preserved_weights(model):
                    inputs = keras.ops.convert_to_numpy(probe(probe_x, training=True))
                statistics.append((inputs.mean(axis=0), inputs.std(axis=0)))
            losses.append(float(model.train_on_batch(x[index], y[index])[0]))
        means, stds = (np.array(s) for s in zip(*statistics, strict=True))
        shift = np.mean(
            np.abs(np.diff(means, axis=0)) + np.abs(np.diff(stds, axis=0)), 1
        )
        train_loss, _ = model.evaluate(x, y, verbose=0)
        result[variant] = {
            "losses": np.array(losses),
            "landscape": np.array(measured) if measured else None,
            "shift": shift,
            "train_loss": float(train_loss),
            "val_accuracy": accuracy(model, split.x_val, split.y_val, False),
        }
    return result


LANDSCAPE = (
    (1, "loss variation (max − min of L along −g)"),
    (2, "gradient predictiveness: max ‖∇L(w − s g) − g‖"),
    (3, "effective β-smoothness: max ‖Δg‖ / ‖s g‖"),
)
COLORS = {"none": "tab:red", "batch": "tab:blue", "noisy batch": "tab:green"}
NAMES = {"none": "no BN", "batch": "BN", "noisy batch": "noisy BN"}


def landscape_rows(landscapes: list[dict]) -> dict:
    """The three landscape measures (median over the measured steps) with and
    without BN, and each variant's shift, losses and accuracy, as estimates over
    seeds."""
    rows = {"landscape": {}, "training": {}}
    for variant in ("none", "batch"):
        curves = np.array([r[variant]["landscape"] for r in landscapes])
        rows["landscape"][variant] = [
            estimate(np.median(curves[:, :, c], axis=1)) for c, _ in LANDSCAPE
        ]
    for variant in VARIANTS:
        runs = [r[variant] for r in landscapes]
        tail = max(1, len(runs[0]["losses"]) // 10)
        rows["training"][variant] = {
            "shift": estimate([np.mean(r["shift"]) for r in runs]),
            "batch_loss": estimate([np.mean(r["losses"][-tail:]) for r in runs]),
            "train_loss": estimate([r["train_loss"] for r in runs]),
            "val_accuracy": estimate([r["val_accuracy"] for r in runs]),
        }
    return rows


landscapes = [
    santurkar(split, seed, settings, pool) for seed, split in enumerate(splits)
]
rows.update(landscape_rows(landscapes))
show_markdown(
    markdown_table(
        ["network", *(name for _, name in LANDSCAPE)],
        [[NAMES[v], *rows["landscape"][v]] for v in ("none", "batch")],
    )
    + "\n"
    + markdown_table(
        [
            "network",
            "covariate shift (per 10 steps)",
            "training-mode batch loss, last tenth (noise on)",
            "training-set loss, inference mode",
            "validation accuracy",
        ],
        [
            [NAMES[v], r["shift"], r["batch_loss"], r["train_loss"], r["val_accuracy"]]
            for v, r in rows["training"].items()
        ],
    )
)

# %% [markdown]
# **How to read the figure.** Top: the three landscape measures against the training
# step with and without BN (log scale, geometric mean over seeds). Bottom, left: the
# training-mode batch loss (a moving mean of 10 steps; noisy BN with its noise on);
# middle: the covariate shift at the last hidden layer's input; right: the validation
# accuracy in inference mode after training, mean and 95 % t-interval, with the
# training-set loss in inference mode below each point.


# %%
def plot_santurkar(runs: list[dict], every: int, path=None):
    """Part 3's landscape curves, training losses, covariate shift and accuracies;
    saved to `path` if given."""
    figure = new_figure(figsize=(15, 8.5), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    for panel, (column, text) in zip(axes[:3], LANDSCAPE, strict=True):
        for variant in ("none", "batch"):
            curves = np.array([r[variant]["landscape"] for r in runs])
            mean_band(
                panel,
                curves[:, :, 0],
                curves[:, :, column],
                label=NAMES[variant],
                color=COLORS[variant],
                log=True,
            )
        label_axes(panel, "training step", text, text, log="y", grid=True)
    for variant in VARIANTS:
        losses = np.array([r[variant]["losses"] for r in runs])
        window = min(10, losses.shape[1])
        smooth = np.array(
            [np.convolve(row, np.ones(window) / window, "valid") for row in losses]
        )
        mean_band(
            axes[3],
            np.arange(smooth.shape[1]) + window,
            smooth,
            label=NAMES[variant],
            color=COLORS[variant],
            log=True,
        )
        shift = np.array([r[variant]["shift"] for r in runs])
        mean_band(
            axes[4],
            every * (np.arange(shift.shape[1]) + 1),
            shift,
            label=NAMES[variant],
            color=COLORS[variant],
            log=True,
        )
    label_axes(
        axes[3],
        "training step",
        "training-mode batch loss (mean of 10 steps)",
        "Batch loss in training mode (noisy BN: noise on)",
        log="y",
        grid=True,
    )
    label_axes(
        axes[4],
        "training step",
        "mean |Δ mean| + |Δ std| of the units",
        "Covariate shift at the last hidden layer's input",
        log="y",
        grid=True,
    )
    intervals = [mean_interval([r[v]["val_accuracy"] for r in runs]) for v in VARIANTS]
    half = [0.0 if np.isnan(i.high) else i.high - i.mean for i in intervals]
    axes[5].errorbar(
        range(len(VARIANTS)),
        [i.mean for i in intervals],
        yerr=half,
        fmt="none",
        ecolor="black",
        capsize=6,
    )
    for k, variant in enumerate(VARIANTS):
        axes[5].plot(k, intervals[k].mean, "o", color=COLORS[variant], markersize=10)
        loss = np.mean([r[variant]["train_loss"] for r in runs])
        axes[5].annotate(
            f"training-set loss\n(inference) {loss:.3f}",
            (k, intervals[k].mean),
            textcoords="offset points",
            xytext=(0, -34),
            ha="center",
            fontsize="x-small",
        )
    axes[5].set_xticks(range(len(VARIANTS)), [NAMES[v] for v in VARIANTS])
    axes[5].set_xlim(-0.6, len(VARIANTS) - 0.4)
    axes[5].margins(y=0.35)
    label_axes(
        axes[5],
        "",
        "validation accuracy (inference mode)",
        f"After {len(runs[0]['none']['losses'])} steps: mean, 95 % t-interval "
        f"(n={len(runs)})",
        legend=None,
        grid=True,
    )
    figure.suptitle(
        f"Santurkar et al. on a {DEEP_LAYERS}-layer MLP: landscape along −g, noisy BN"
    )
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_santurkar(landscapes, settings["santurkar_every"], out / "08_santurkar.png")

# %% [markdown]
# ## 4. Normalization variants against the batch size
#
# Batch, layer, instance and group normalization (`keras_optnotes.layers.
# normalization`) as the batch shrinks to 2: a small CNN, Conv(8, 3×3) → norm → ReLU →
# MaxPool 2×2 → Conv(16, 3×3) → norm → ReLU → Flatten → Dense(10), on the first 384
# training digits (8×8), batch 32, 8 and 2, 10 epochs at every batch size, SGD with
# momentum 0.9 and the learning rate scaled linearly with the batch (η = 0.1·B/32;
# Goyal et al. 2017, as Wu & He 2018 do); plus the network without normalization.
# Validation accuracy is measured at equal epochs (the end: the same examples seen, Wu
# & He's comparison) and at equal steps (after the 120 steps that batch 32 takes in
# its 10 epochs).
#
# Layer normalization takes its statistics over (H, W, C) of each example
# (`axis=(1, 2, 3)`), as Ba et al. and Wu & He define it (Keras' default, the last
# axis only, would normalize each pixel over its channels); group normalization uses 4
# groups, instance normalization one channel per group.


# %%
def conv_network(kind: str, seed: int, batch_size: int) -> keras.Model:
    """Conv(8) → norm → ReLU → MaxPool → Conv(16) → norm → ReLU → Flatten → softmax."""
    arguments = {
        "none": None,
        "batch": {},
        "layer": {"axis": (1, 2, 3)},
        "instance": {},
        "group": {"groups": 4},
    }[kind]
    inputs = keras.Input(shape=(8, 8, 1))
    x = inputs
    for position, filters in ((1, 8), (2, 16)):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + position),
        )(x)
        if arguments is not None:
            x = normalization(kind, **arguments)(x)
        x = keras.layers.Activation("relu")(x)
        if position == 1:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(
        10,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + 3),
    )(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(
            BASE_RATE * batch_size / BASE_BATCH, momentum=0.9
        ),
        loss=LOSS,
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def evaluate_at_step(step: int, x, y, into: dict):
    """A callback that stores the validation accuracy (inference mode) after `step`
    training steps in `into["accuracy"]`."""

    class AtStep(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.count = 0

        def on_train_batch_end(self, batch, logs=None):
            self.count += 1
            if self.count == step:
                into["accuracy"] = accuracy(self.model, x, y, False)

    return AtStep()


def variants_by_batch_size(seed: int, settings: dict, pool: ModelPool) -> dict:
    """Part 4: validation accuracy of each normalization at each batch size, at equal
    epochs (the end of training) and at equal steps (after as many steps as the
    largest batch takes in all its epochs), as `result[budget][kind][batch_size]`;
    the per-epoch training losses as `result["loss"][kind][batch_size]`."""
    split = data.load("digits", seed=seed)
    # A multiple of every batch size: with an odd number of samples, `fit` would end
    # each epoch of batch 2 with a batch of one, where BN outputs β (part 2).
    keep = settings["variant_samples"]
    x, y = split.x_train[:keep], split.y_train[:keep]
    sizes, epochs = settings["batch_sizes"], settings["variant_epochs"]
    equal_steps = keep // max(sizes) * epochs
    result = {
        "epochs": {kind: {} for kind in KINDS},
        "steps": {kind: {} for kind in KINDS},
        "loss": {kind: {} for kind in KINDS},
        "equal_steps": equal_steps,
    }
    for kind in KINDS:
        for batch_size in sizes:
            keras.utils.set_random_seed(seed)
            model = pool.restart(
                ("conv", kind), lambda k=kind, b=batch_size: conv_network(k, seed, b)
            )
            model.optimizer.learning_rate = BASE_RATE * batch_size / BASE_BATCH
            at_step = {}
            history = model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=0,
                callbacks=[
                    evaluate_at_step(equal_steps, split.x_val, split.y_val, at_step)
                ],
            )
            result["epochs"][kind][batch_size] = accuracy(
                model, split.x_val, split.y_val, False
            )
            result["steps"][kind][batch_size] = at_step["accuracy"]
            result["loss"][kind][batch_size] = tuple(history.history["loss"])
    return result


def variant_rows(variants: list[dict], settings: dict) -> dict:
    """Each normalization's accuracy at each batch size and budget, and the
    baseline's last two training losses, as estimates over seeds."""
    sizes = settings["batch_sizes"]
    rows = {
        "variants": {
            budget: {
                kind: {
                    b: estimate([v[budget][kind][b] for v in variants]) for b in sizes
                }
                for kind in KINDS
            }
            for budget in ("epochs", "steps")
        }
    }
    losses = np.array([v["loss"]["none"][sizes[0]] for v in variants])
    rows["baseline_loss"] = {
        "last": estimate(losses[:, -1]),
        "before_last": estimate(losses[:, -2]) if losses.shape[1] > 1 else None,
    }
    return rows


variants = [variants_by_batch_size(seed, settings, pool) for seed in range(seeds)]
rows.update(variant_rows(variants, settings))
tables = [
    f"{settings['variant_epochs']} epochs at every batch size on "
    f"{settings['variant_samples']} training digits, η = {BASE_RATE}·B/{BASE_BATCH} "
    "with momentum 0.9, validation accuracy in inference mode, measured twice: at the "
    "end (equal epochs: every batch size sees the same examples, the small batches "
    "take more steps) and after "
    f"{settings['variant_samples'] // max(settings['batch_sizes'])}·"
    f"{settings['variant_epochs']} steps, the largest batch's total (equal steps: the "
    "small batches have seen fewer examples)."
]
for budget, heading in (("epochs", "Equal epochs"), ("steps", "Equal steps")):
    tables.append(f"**{heading}**")
    tables.append(
        markdown_table(
            ["normalization", *(f"batch {b}" for b in settings["batch_sizes"])],
            [
                [kind, *(row[b] for b in settings["batch_sizes"])]
                for kind, row in rows["variants"][budget].items()
            ],
        )
    )
show_markdown("\n\n".join(tables))

# %% [markdown]
# **How to read the figure.** Validation accuracy (inference mode; mean and 95 %
# t-interval over seeds) of each normalization against the batch size, at equal epochs
# (left) and at equal steps (right); the points of the five variants are shifted
# slightly sideways so that their error bars do not overlap.


# %%
def plot_batch_sizes(variants: list[dict], batch_sizes, path=None):
    """Part 4's accuracies against the batch size at both budgets; saved to `path`
    if given."""
    figure = new_figure(figsize=(13, 4.8), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    steps = variants[0]["equal_steps"]
    for axes, budget, title in (
        (panels[0], "epochs", "Equal epochs (η = 0.1·B/32): end of training"),
        (panels[1], "steps", f"Equal steps: after {steps} steps"),
    ):
        for offset, kind in enumerate(KINDS):
            values = [[v[budget][kind][b] for v in variants] for b in batch_sizes]
            intervals = [mean_interval(column) for column in values]
            means = np.array([i.mean for i in intervals])
            half = np.array([i.high - i.mean for i in intervals])
            axes.errorbar(
                np.array(batch_sizes) * (1 + 0.04 * (offset - 2)),
                means,
                yerr=None if np.isnan(half).any() else half,
                marker="o",
                capsize=4,
                label=f"{kind} (n={len(variants)})",
            )
        label_axes(
            axes,
            "batch size (log scale)",
            "validation accuracy (inference mode), mean and 95 % t-interval",
            title,
            grid=True,
        )
        axes.set_xscale("log", base=2)
        axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    figure.suptitle("Normalization variants as the batch shrinks (CNN on 384 digits)")
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_batch_sizes(variants, settings["batch_sizes"], out / "08_batch_size.png")

# %% [markdown]
# ## What reproduced
#
# Each part's claim against what was measured; differences paired by seed, with their
# 95 % intervals.


# %%
def moving_verdict(rows) -> str:
    """Part 1: do training and inference mode disagree early and agree later?"""
    default = rows["moving"][MOMENTA[0]]
    early_gap = default["largest_gap"]
    late_gap = default["last"][1].mean - default["last"][0].mean
    other = rows["moving"][MOMENTA[1]]["largest_gap"]
    return (
        f"Moving statistics (momentum {MOMENTA[0]}, Keras' default): the training-mode "
        "accuracy is ahead of the inference-mode one by up to "
        f"{early_gap:.3f} (mean over seeds, at step {default['largest_gap_step']}); "
        f"after step {int(default['steps'][-1])} {default['last'][0]} (inference) "
        f"against {default['last'][1]} (training mode), gap {late_gap:+.3f}; with "
        f"exactly recomputed statistics {default['last'][2]}. With momentum "
        f"{MOMENTA[1]} the largest gap is {other:.3f}. "
        + (
            "**Reproduces**: inference and training mode disagree early and agree "
            "once the moving averages have caught up."
            if abs(early_gap) > 3 * abs(late_gap)
            else "**Does not reproduce** at this length (a 2-layer BN MLP on the "
            "digits, the default momenta): the gap does not close."
        )
    )


def single_sample_verdicts(layer, single) -> list[str]:
    """Part 2: the layer outputs β, and the network learns nothing from its inputs."""
    exact = layer["max_difference_from_beta"] <= layer["rounding_bound"]
    variance_error = np.max(
        np.abs(layer["moving_variance"] - layer["expected_moving_variance"])
    )
    return [
        f"A batch of one in training mode: over {layer['calls']} different inputs the "
        f"output differs from β by at most {layer['max_difference_from_beta']:.2g} "
        f"(rounding bound {layer['rounding_bound']:.2g}): "
        + ("**the output is β, whatever the input**" if exact else "**not β**")
        + f"; the moving variance after {layer['calls']} calls is "
        f"{variance_error:.2g} from momentum^{layer['calls']} = "
        f"{layer['expected_moving_variance']:.6f}.",
        f"Trained with batch 1 for {single['steps']} steps: the first kernel's gradient "
        f"has norm {single['first_kernel_gradient']:.2g}; only the output layer's bias "
        f"still learns (gradient norm {single['output_bias_gradient']:.2g}: the hidden "
        "units output ReLU(β), and β stays 0 where ReLU's gradient at 0 is 0); the "
        "training-mode outputs of 20 "
        f"different digits differ by at most {single['output_spread_over_inputs']:.2g} "
        f"(standard deviation); training loss {single['train_loss_last']:.3f} against "
        f"the label entropy {single['label_entropy']:.3f} (the best an input-blind "
        f"network can do); moving variance {single['moving_variance_mean']:.3g} "
        f"(momentum^steps = {single['momentum_power']:.3g}); inference accuracy "
        f"{single['val_accuracy']:.3f} (majority class: "
        f"{single['majority_accuracy']:.3f}). **The network cannot learn from its "
        "inputs.**",
    ]


def landscape_verdict(rows) -> str:
    """Santurkar et al.'s smoothness claim, from paired differences over seeds."""
    none, batch = rows["landscape"]["none"], rows["landscape"]["batch"]
    parts, smoother = [], []
    for (_, name), n, b in zip(LANDSCAPE, none, batch, strict=True):
        parts.append(
            f"{name.split(':')[0]}: {b} with BN, {n} without, "
            f"difference {difference(n, b)}"
        )
        if len(n.values) > 1 and paired_difference(n.values, b.values).low > 0:
            smoother.append(name.split(":")[0])
    return (
        "Santurkar et al.'s landscape (median over the measured steps; mean and 95 % "
        "t-interval over seeds; differences no BN − BN paired by seed): "
        + "; ".join(parts)
        + ". Measured: BN's landscape is smoother, significantly at 95 %, in "
        + (", ".join(smoother) if smoother else "none of the three measures")
        + f" (of {len(LANDSCAPE)}). Their measurements are on VGG/CIFAR-10 over "
        "thousands of steps; here a 6-layer MLP on the digits for "
        "a few hundred steps, measured every 10 steps at 4 step sizes."
    )


def noisy_verdict(rows) -> str:
    """Santurkar et al.'s noisy BN: more covariate shift, yet it trains like BN?"""
    training = rows["training"]
    noisy, plain, normal = (training[v] for v in ("noisy batch", "none", "batch"))
    return (
        f"Noisy BN: covariate shift {noisy['shift']} against {normal['shift']} with "
        f"BN and {plain['shift']} without. Validation accuracy {noisy['val_accuracy']} "
        f"against {normal['val_accuracy']} (BN) and {plain['val_accuracy']} (no BN): "
        f"noisy − BN {difference(noisy['val_accuracy'], normal['val_accuracy'])}, "
        f"noisy − no BN {difference(noisy['val_accuracy'], plain['val_accuracy'])}. "
        "Training-set loss in inference mode (noise off) "
        f"{noisy['train_loss']} against {normal['train_loss']} and "
        f"{plain['train_loss']}; the training-mode batch loss with its noise on (the "
        f"figure's lower-left panel, last tenth of the steps) {noisy['batch_loss']} "
        f"against {normal['batch_loss']} and {plain['batch_loss']}. Santurkar et al. "
        "(VGG on CIFAR-10, trained to convergence) find noisy BN training about as "
        "well as BN; here, after a few hundred steps of a 6-layer MLP, read the "
        "paired differences above: the noise makes the shift far larger than without "
        "BN, and whatever gap to BN remains is in the numbers, not hidden by a verdict."
    )


def variants_verdict(rows, settings) -> str:
    """Wu & He's claim: BN degrades as the batch shrinks, the others do not."""
    sizes = settings["batch_sizes"]
    big, small = sizes[0], sizes[-1]
    text = []
    for budget, words in (
        (
            "epochs",
            f"at equal epochs ({settings['variant_epochs']}, η ∝ B: Wu & He's setting)",
        ),
        ("steps", "at equal steps (the largest batch's step count)"),
    ):
        table = rows["variants"][budget]
        changes = [
            f"{kind} {difference(table[kind][small], table[kind][big])}"
            for kind in KINDS
        ]
        text.append(
            f"From batch {big} to {small} {words}, the validation accuracy changes "
            f"by (batch {small} − batch {big}, paired by seed): "
            + "; ".join(changes)
            + "."
        )
    baseline = rows["baseline_loss"]
    if baseline["before_last"] is not None:
        text.append(
            f"The baseline (no normalization, batch {big}) has training loss "
            f"{baseline['before_last']} after epoch {settings['variant_epochs'] - 1} "
            f"and {baseline['last']} after epoch {settings['variant_epochs']}."
        )
    text.append(
        "Wu & He measure ResNet-50 on ImageNet for 100 epochs with 32 down to 2 "
        "images per GPU; here a two-layer CNN on 384 digits, "
        f"{settings['variant_epochs']} epochs, 3 seeds: only the differences whose "
        "interval excludes 0 are measured effects."
    )
    return " ".join(text)


verdicts = [
    moving_verdict(rows),
    *single_sample_verdicts(layer, single),
    landscape_verdict(rows),
    noisy_verdict(rows),
]
if len(settings["batch_sizes"]) > 1:
    verdicts.append(variants_verdict(rows, settings))
show_markdown("\n".join(f"- {verdict}" for verdict in verdicts))

# %% [markdown]
# ## The answer
#
# Not by removing covariate shift: noisy BN has 33× BN's shift and a validation
# accuracy not significantly different from BN's (+0.003 [−0.016, +0.021], 3 seeds),
# though its training loss stays higher (0.063 against 0.024 in inference mode; 0.41
# against 0.08 in training mode, noise on). What BN changes is the landscape along the
# gradient: the loss varies 15× less and the gradient 5.5× less, both significant; the
# effective β-smoothness is not significantly different. A batch of one at training
# time outputs β and learns nothing. Wu & He's small-batch failure of BN is not seen
# here at equal epochs: no variant's accuracy changes significantly from batch 32 to 2
# except layer normalization's, which rises.
#
# Santurkar et al.'s measurements on a 6-layer MLP, 360 steps, 3 seeds (mean [95 %
# t-interval]; differences paired by seed): loss variation along −g 0.126 [0.098,
# 0.155] with BN against 1.93 [1.35, 2.51] without, gradient change 2.15 [1.93, 2.37]
# against 11.9 [10.3, 13.6], β-smoothness 16.9 [16.1, 17.7] against 17.9 [15.6, 20.1]
# (not significant). Noisy BN: covariate shift 0.657 [0.615, 0.700] against 0.020 with
# BN and 0.197 without; validation accuracy 0.973 [0.952, 0.994] against 0.970 [0.948,
# 0.993] (BN) and 0.951 [0.929, 0.973] (none); the figure's loss panel is the
# training-mode batch loss, noise on, where noisy BN is highest. Santurkar et al. train
# VGG on CIFAR-10 to convergence; this is a few hundred steps of a small MLP.
#
# In training mode BN uses the batch's statistics: early on, inference mode (moving
# averages, momentum 0.99) trails training mode by up to 0.39 accuracy, and agrees
# after 200 steps; a batch of one outputs β for every input and the network learns
# nothing from its inputs.
#
# Normalization variants on 384 digits, 10 epochs, η = 0.1·B/32: at equal epochs (Wu &
# He's comparison) BN 0.945 at batch 32 and 0.960 at batch 2, GN 0.955 and 0.962, none
# of the changes significant but layer normalization's (+0.035 [+0.018, +0.053]); at
# equal steps (120) every variant is worse at batch 2, having seen a sixteenth of the
# examples (none 0.37, BN 0.81, GN 0.83). The baseline (no normalization, batch 32) was
# still improving at the end (training loss 0.095 after epoch 9, 0.066 after epoch
# 10), so the budget is not long enough for it to converge; Wu & He train ResNet-50 on
# ImageNet for 100 epochs.
#
# ### References
#
# - Ioffe & Szegedy, "Batch Normalization: accelerating deep network training by
#   reducing internal covariate shift", ICML 2015.
# - Santurkar, Tsipras, Ilyas, Mądry, "How does batch normalization help
#   optimization?", NeurIPS 2018 (Figures 2 and 4).
# - Ba, Kiros & Hinton, "Layer Normalization", 2016; Ulyanov, Vedaldi & Lempitsky,
#   "Instance Normalization", 2016; Wu & He, "Group Normalization", ECCV 2018.
# - Goyal et al., "Accurate, large minibatch SGD", 2017.

# %%
write_json(
    out / "08_normalization.json",
    {
        "moving": moving,
        "layer": layer,
        "single": single,
        "santurkar": landscapes,
        "variants": variants,
        "rows": rows,
        "verdicts": verdicts,
        "seeds": seeds,
    },
)
print(run_description(time.perf_counter() - started))
