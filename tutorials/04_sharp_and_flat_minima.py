"""Sharp and flat minima: does a large batch find a sharper minimum that generalizes worse?

The notes' section. "Batch-size Matters" (Keskar et al. 2017): "큰 배치사이즈의 경우
날카로운 극소점에 도달하고, 작은 배치사이즈의 경우 완만한 극소점에 도달한다고 한다. 완만한
극소점에 도달하는 경우 일반화 성능이 더 좋다고한다." (with a large batch training reaches a
sharp minimum, with a small batch a flat one; the flat minimum is said to generalize
better).

The questions. (1) On the digits, does the large batch reach a sharper minimum (the
Hessian's top eigenvalue λ_max, its trace, Keskar's ε-sharpness) and does it generalize
worse (validation accuracy, the loss gap val − train), on every seed or only on
average? (2) What does the loss look like between the two solutions (Keskar et al.'s
Figure 3: f((1 − α) θ_small + α θ_large)) and around each of them (Li et al. 2018's
filter-normalized 2-D surface)? (3) What do the remedies — SAM, LARS with warm-up,
SWA and Lookahead — do to the large-batch run: a flatter minimum, a smaller gap, and
a better or only a worse-fitting network?

The experiment. `keras_optnotes.experiments.sharpness.compare_batch_sizes`, the
experiment of `keras-optnotes sharpness`: the digits CNN of `models.build_classifier`
(5,130 weights), Adam η = 0.003; `small` trains with batch 16, `large` with the large
batch from the same initial weights until its training loss reaches the small batch's
final one (Keskar's comparison at equal training loss; at most `large_epochs`), and the
remedies (each its paper's default: SAM ρ = 0.05, LARS trust coefficient 0.001 with
linear scaling, a 5-epoch warm-up and cosine decay, SWA from 75 % of the epochs,
Lookahead k = 5, α = 0.5) train with the large batch for as many epochs as `large`
took. Every solution is measured on the first `measure_samples` training samples in
inference mode; seeds 0..N−1 change the split, the weights and the batches. **What was
cut, and why**: the command's defaults (30 epochs of batch 16, batch 512 for up to 300
epochs, 512 measurement samples, 20 trace vectors, XLA, seven runs) take about 150 s
of CPU time for one seed; three seeds must fit in three minutes. This run trains the
small batch for 8 epochs, uses batch 256 as the large batch (at most 60 epochs),
measures on 256 samples with 4 trace vectors, skips XLA (`jit_compile=False`, faster
on a CPU for a model this small) and leaves out ASAM. Fewer epochs mean a less
converged small-batch solution (training loss about 0.2, not ≈ 0); batch 256 is 16×
the small batch, not the 32× of the command (Keskar et al. used 10 % of the data,
here 18 %).

The surfaces. For seed 0 the experiment keeps its trained models
(`compare_batch_sizes(..., keep_models=True)`), and the tutorial draws for the `small`
and `large` solutions the loss on θ + α d₁ + β d₂ with d₁, d₂ from
`diagnostics.random_direction(model, seed=1/2)` (Gaussian, each filter rescaled to its
weights' norm, biases left out) via `diagnostics.loss_surface`. Filter normalization is
what makes the two pictures comparable: a direction scaled to each filter's norm moves
both solutions by the same relative amount. Only seed 0 is drawn; the surfaces' mean
rise at radius 0.5 is given for that seed.

How to read the output. `04_sharp_and_flat_minima.md` has the tables and the verdicts;
`04_sharp_and_flat_minima.png` (main figure) shows validation accuracy, loss gap, λ_max
and Keskar sharpness of every run (bars: the mean over seeds, error bars: ± one
standard deviation, dots: the seeds); `04_interpolation.png` is Keskar's Figure 3
(mean ± s.d. over the seeds); `04_surfaces.png` the two surfaces on the same contour
levels; `04_remedies.png` each remedy's paired change from the large run (same seed)
of the gap against its change of validation accuracy.

Run:

    python tutorials/04_sharp_and_flat_minima.py           # about 2 minutes on two idle cores
    python tutorials/04_sharp_and_flat_minima.py --quick   # smoke run, seconds

References:
    Keskar, Mudigere, Nocedal, Smelyanskiy, Tang, "On Large-Batch Training for Deep
    Learning: Generalization Gap and Sharp Minima", ICLR 2017.
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
    Nets", NeurIPS 2018.
    Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization", ICLR 2021.
    You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks" (LARS),
    2017; Goyal et al., "Accurate, Large Minibatch SGD", 2017 (linear scaling, warm-up).
    Izmailov et al., "Averaging Weights Leads to Wider Optima" (SWA), UAI 2018.
    Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer", NeurIPS 2019.
    Dinh, Pascanu, Bengio, Bengio, "Sharp Minima Can Generalize For Deep Nets", ICML
    2017 (why sharpness alone cannot decide).
"""

from __future__ import annotations

from collections.abc import Sequence

import _common

OPTIONS = {"default_seeds": 3, "quick_seeds": 1}
if __name__ == "__main__":  # bad options fail at once, before TensorFlow loads
    _common.parse_options(None, __file__, __doc__, **OPTIONS)
_common.import_backend_quietly()

import numpy as np  # noqa: E402

from keras_optnotes import data, diagnostics  # noqa: E402
from keras_optnotes.experiments import sharpness  # noqa: E402
from keras_optnotes.report import new_figure  # noqa: E402

SETTINGS = {
    False: {
        "runs": ("small", "large", "sam", "lars", "swa", "lookahead"),
        "max_samples": None,
        "small_batch": 16,
        "large_batch": 256,
        "epochs": 8,
        "large_epochs": 60,
        "measure_samples": 256,
        "trace_samples": 4,
        "grid": np.linspace(-1.0, 1.0, 17),
    },
    True: {
        "runs": ("small", "large", "sam", "swa"),
        "max_samples": 256,
        "small_batch": 16,
        "large_batch": 128,
        "epochs": 2,
        "large_epochs": 4,
        "measure_samples": 64,
        "trace_samples": 2,
        "grid": np.linspace(-1.0, 1.0, 5),
    },
}
LABELS = {
    "small": "small batch",
    "large": "large batch",
    "sam": "large + SAM",
    "asam": "large + ASAM",
    "lars": "large + LARS, warm-up",
    "swa": "large + SWA",
    "lookahead": "large + Lookahead",
}
QUANTITIES = {
    "train_loss": lambda r: r.train_loss,
    "val_loss": lambda r: r.val_loss,
    "loss_gap": lambda r: r.loss_gap,
    "train_accuracy": lambda r: 100 * r.train_accuracy,
    "val_accuracy": lambda r: 100 * r.val_accuracy,
    "error_gap": lambda r: 100 * (r.train_accuracy - r.val_accuracy),
    "lambda_max": lambda r: r.lambda_max,
    "hessian_trace": lambda r: r.hessian_trace,
    "keskar_sharpness": lambda r: r.keskar_sharpness,
    "epochs": lambda r: float(r.epochs),
}
# The summary's tables: {column heading: key of `run_rows`}.
RUN_COLUMNS = {
    "epochs": "epochs",
    "train loss": "train_loss",
    "val loss": "val_loss",
    "loss gap": "loss_gap",
    "train acc. (%)": "train_accuracy",
    "val acc. (%)": "val_accuracy",
    "λ_max": "lambda_max",
    "Hessian trace": "hessian_trace",
    "Keskar sharpness (%)": "keskar_sharpness",
}
REMEDY_COLUMNS = {
    "Δ loss gap": "delta_loss_gap",
    "Δ val acc. (points)": "delta_val_accuracy",
    "Δ train loss": "delta_train_loss",
    "Δ λ_max": "delta_lambda_max",
}
SURFACE_RADIUS = 0.5


def comparisons(seeds: int, settings: dict, progress=None) -> list:
    """One `BatchSizeComparison` per seed (the split, weights and batches by seed)."""
    results = []
    for seed in range(seeds):
        split = data.load("digits", seed=seed, max_samples=settings["max_samples"])
        print(f"seed {seed}: compare_batch_sizes", flush=True)
        results.append(
            sharpness.compare_batch_sizes(
                split,
                runs=settings["runs"],
                small_batch=settings["small_batch"],
                large_batch=settings["large_batch"],
                epochs=settings["epochs"],
                large_epochs=settings["large_epochs"],
                measure_samples=settings["measure_samples"],
                trace_samples=settings["trace_samples"],
                seed=seed,
                jit_compile=False,
                keep_models=seed == 0,
                progress=progress,
            )
        )
    return results


def run_rows(results: Sequence, names: Sequence[str]) -> dict:
    """`{run: {quantity: Spread, "values": {...}}}` over the seeds, and each run's
    paired change from `large` of the same seed (which shares its split, weights and
    batch order)."""

    def per_seed(name):
        return {
            q: np.array([get(r.get(name)) for r in results], float)
            for q, get in QUANTITIES.items()
        }

    large = per_seed("large")
    rows = {}
    for name in names:
        values = per_seed(name)
        row = {q: _common.spread(v) for q, v in values.items()}
        row["values"] = values
        for q in ("loss_gap", "val_accuracy", "train_loss", "lambda_max"):
            delta = values[q] - large[q]
            row[f"delta_{q}"] = _common.spread(delta)
            row[f"delta_{q}_values"] = delta
        rows[name] = row
    return rows


def seed_counts(results: Sequence) -> dict:
    """On how many seeds each of Keskar's effects holds (large against small)."""
    pairs = [(r.get("small"), r.get("large")) for r in results]
    return {
        "sharper_lambda": sum(b.lambda_max > a.lambda_max for a, b in pairs),
        "sharper_trace": sum(b.hessian_trace > a.hessian_trace for a, b in pairs),
        "sharper_keskar": sum(
            b.keskar_sharpness > a.keskar_sharpness for a, b in pairs
        ),
        "larger_gap": sum(b.loss_gap > a.loss_gap for a, b in pairs),
        "lower_accuracy": sum(b.val_accuracy < a.val_accuracy for a, b in pairs),
        "reached_target": sum(b.train_loss <= a.train_loss + 0.02 for a, b in pairs),
    }


# The surfaces of seed 0's small and large solutions ---------------------------


def surfaces(models: dict, subset, grid) -> dict:
    """Li et al.'s filter-normalized surface around each model, directions seeds 1, 2."""
    return {
        name: diagnostics.loss_surface(
            model,
            subset,
            (
                diagnostics.random_direction(model, seed=1),
                diagnostics.random_direction(model, seed=2),
            ),
            grid=grid,
            verbose=0,
        )
        for name, model in models.items()
    }


def ring_rise(surface, radius: float = SURFACE_RADIUS) -> float:
    """The mean loss on the grid points nearest the circle of `radius`, minus the
    loss at the centre: how steeply the surface rises, as one number."""
    a, b = np.meshgrid(surface.alphas, surface.betas, indexing="ij")
    r = np.hypot(a, b)
    step = float(np.max(np.diff(surface.alphas)))
    ring = np.abs(r - radius) <= step / 2
    centre = surface.losses[np.argmin(np.abs(surface.alphas)), :][
        np.argmin(np.abs(surface.betas))
    ]
    return float(np.mean(surface.losses[ring]) - centre)


# Figures ---------------------------------------------------------------------------


def failed_runs(rows: dict, names) -> list[str]:
    """Runs that did not train: mean validation accuracy below 50 % (a diverged or
    stalled run), drawn apart so that they do not stretch the other runs' scales."""
    return [n for n in names if not rows[n]["val_accuracy"].mean >= 50.0]


def _not_shown(rows: dict, failed) -> str:
    """A second title line naming the runs left out of a figure, with accuracy."""
    if not failed:
        return ""
    return "\nnot shown, did not train (mean validation accuracy below 50 %): " + (
        "; ".join(f"{LABELS[n]} {rows[n]['val_accuracy'].mean:.1f} %" for n in failed)
    )


def plot_runs(rows: dict, names, staging, seeds: int):
    figure = new_figure(figsize=(15, 4.8), layout="constrained")
    panels = (
        ("val_accuracy", "validation accuracy (%)"),
        ("loss_gap", "loss gap: val − train cross-entropy"),
        ("lambda_max", "Hessian λ_max"),
        ("keskar_sharpness", "Keskar ε-sharpness (%)"),
    )
    failed = failed_runs(rows, names)
    shown = [n for n in names if n not in failed]
    y = np.arange(len(shown))
    for axes, (key, what) in zip(figure.subplots(1, 4), panels, strict=True):
        for k, n in enumerate(shown):
            values = rows[n]["values"][key]
            interval = _common.estimate(values).interval
            half = 0.0 if np.isnan(interval.high) else interval.high - interval.mean
            color = "C0" if n == "small" else "C3" if n == "large" else "C7"
            axes.errorbar(interval.mean, k, xerr=half, fmt="o", color=color, capsize=3)
            axes.plot(values, np.full(len(values), k), "k.", ms=4, alpha=0.6)
        axes.set_yticks(y, [LABELS[n] for n in shown])
        axes.set_ylim(len(shown) - 0.5, -0.5)
        axes.grid(True, axis="x", alpha=0.3)
        _common.label(axes, what, None, what.split(":")[0], legend=None)
    figure.suptitle(
        "Small against large batch, and the remedies on the large batch (digits CNN; "
        f"mean and 95 % t-interval over {seeds} seeds, dots: the seeds)"
        + _not_shown(rows, failed)
    )
    return _common.save(figure, staging, "04_sharp_and_flat_minima.png")


def plot_interpolation(results: Sequence, staging):
    figure = new_figure(figsize=(7, 4.6), layout="constrained")
    axes = figure.add_subplot()
    alphas = np.asarray(results[0].alphas)
    _common.mean_band(
        axes,
        alphas,
        [r.train_line for r in results],
        label="training subset",
        log=True,
        color="C0",
    )
    _common.mean_band(
        axes,
        alphas,
        [r.val_line for r in results],
        label="validation set",
        log=True,
        color="C3",
        ls="--",
    )
    for x, name in ((0.0, "small"), (1.0, "large")):
        axes.axvline(x, color="k", lw=0.6, alpha=0.5)
        axes.annotate(
            f"θ_{name}",
            (x, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize="small",
        )
    _common.label(
        axes,
        "α  in  (1 − α) θ_small + α θ_large",
        "cross-entropy (log scale)",
        "Keskar et al.'s Figure 3 on the digits (mean ± 1 s.d. over seeds)",
        log="y",
        grid=True,
    )
    return _common.save(figure, staging, "04_interpolation.png")


def plot_surfaces(found: dict, rises: dict, staging):
    figure = new_figure(figsize=(11, 4.6), layout="constrained")
    low = min(float(s.losses.min()) for s in found.values())
    high = max(float(s.losses.max()) for s in found.values())
    levels = np.geomspace(max(low, 1e-3), high, 25)
    grid = figure.subplots(1, len(found), sharey=True)
    for axes, (name, surface) in zip(np.atleast_1d(grid), found.items(), strict=True):
        betas, alphas = np.meshgrid(surface.betas, surface.alphas)
        contours = axes.contourf(
            alphas, betas, surface.losses, levels=levels, cmap="viridis", norm="log"
        )
        axes.contour(
            alphas,
            betas,
            surface.losses,
            levels=levels[::3],
            colors="w",
            linewidths=0.5,
        )
        axes.plot([0.0], [0.0], "r+", ms=10)
        axes.set_aspect("equal")
        _common.label(
            axes,
            "α (filter-normalized direction 1)",
            "β (direction 2)",
            f"{LABELS[name]}: mean rise at r = {SURFACE_RADIUS} is {rises[name]:.3g}",
            legend=None,
        )
    bar = figure.colorbar(
        contours, ax=grid, label="training-subset cross-entropy (log scale)"
    )
    bar.set_ticks(levels[::4], labels=[f"{level:.3g}" for level in levels[::4]])
    figure.suptitle("Li et al.'s filter-normalized loss surfaces, seed 0, same levels")
    return _common.save(figure, staging, "04_surfaces.png")


def plot_remedies(rows: dict, remedies, staging):
    figure = new_figure(figsize=(12, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    failed = failed_runs(rows, remedies)
    remedies = [n for n in remedies if n not in failed]
    for axes in (left, right):
        axes.axhline(0, color="k", lw=0.7)
        axes.axvline(0, color="k", lw=0.7)
    for k, name in enumerate(remedies, start=1):
        for axes, key in ((left, "delta_val_accuracy"), (right, "delta_lambda_max")):
            _common.paired_change(
                axes,
                rows[name],
                "delta_loss_gap",
                key,
                color=f"C{k}",
                label=LABELS[name],
            )
    _common.label(
        left,
        "change of the loss gap from the large run (same seed)",
        "change of validation accuracy (points)",
        "lower left: a smaller gap bought by fitting worse",
    )
    _common.label(
        right,
        "change of the loss gap from the large run (same seed)",
        "change of λ_max",
        "below 0: flatter than the large run",
    )
    figure.suptitle(
        "What each remedy does to the large-batch run (mean ± 1 s.d. over "
        "seeds; small dots: the seeds)" + _not_shown(rows, failed)
    )
    return _common.save(figure, staging, "04_remedies.png")


# The run ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the comparison over the seeds, the surfaces of seed 0, writes everything."""
    args = _common.parse_options(argv, __file__, __doc__, **OPTIONS)
    settings = SETTINGS[args.quick]
    seeds, names = args.seeds, settings["runs"]
    remedies = [n for n in names if n not in ("small", "large")]
    title = "04 — sharp and flat minima: small against large batch, and the remedies"
    with _common.output(args, title) as (staging, summary):
        results = comparisons(seeds, settings, progress=print)
        rows = run_rows(results, names)
        counts = seed_counts(results)
        plot_runs(rows, names, staging, seeds)
        plot_interpolation(results, staging)

        print("seed 0: the loss surfaces of small and large", flush=True)
        split = data.load("digits", seed=0, max_samples=settings["max_samples"])
        subset = (
            split.x_train[: settings["measure_samples"]],
            split.y_train[: settings["measure_samples"]],
        )
        models = {name: results[0].models[name] for name in ("small", "large")}
        found = surfaces(models, subset, settings["grid"])
        rises = {name: ring_rise(s) for name, s in found.items()}
        plot_surfaces(found, rises, staging)
        if remedies:
            plot_remedies(rows, remedies, staging)
        write_summary(summary, settings, seeds, results, rows, counts, rises, remedies)
    return {
        "results": results,
        "rows": rows,
        "counts": counts,
        "surfaces": found,
        "rises": rises,
        "seeds": seeds,
    }


def write_summary(
    summary, settings, seeds, results, rows, counts, rises, remedies
) -> None:
    small, large = rows["small"], rows["large"]
    summary.text(
        f"## 1. Small against large batch\n\n`compare_batch_sizes` on the digits, "
        f"seeds 0–{seeds - 1}, batch {settings['small_batch']} for "
        f"{settings['epochs']} epochs against batch {settings['large_batch']} until "
        f"the same training loss (at most {settings['large_epochs']} epochs), "
        f"measured on {settings['measure_samples']} training samples "
        f"({settings['trace_samples']} trace vectors); mean ± standard deviation "
        "over the seeds. **Cut from the command's defaults to fit three seeds into "
        f"three minutes**: {settings['epochs']} epochs instead of "
        f"{sharpness.DEFAULT_EPOCHS}, batch {settings['large_batch']} instead of "
        f"{sharpness.DEFAULT_LARGE_BATCH}, {settings['measure_samples']} measurement "
        f"samples instead of {sharpness.DEFAULT_MEASURE_SAMPLES}, "
        f"{settings['trace_samples']} trace vectors instead of "
        f"{sharpness.DEFAULT_TRACE_SAMPLES}, no XLA, runs "
        f"{', '.join(settings['runs'])} only (see the script's docstring)."
    )
    summary.figure(
        "04_sharp_and_flat_minima.png",
        "accuracy, gap, λ_max and Keskar sharpness of every run",
    )
    summary.table(
        ["run", *RUN_COLUMNS],
        [[LABELS[n], *(str(rows[n][k]) for k in RUN_COLUMNS.values())] for n in rows],
    )
    ratio = _common.spread(
        large["values"]["lambda_max"] / small["values"]["lambda_max"]
    )
    summary.text(
        "**Which of Keskar et al.'s effects reproduce at this scale** (large against "
        f"small of the same seed, {seeds} seeds): λ_max larger on "
        f"{counts['sharper_lambda']}/{seeds} (ratio {ratio}), Hessian trace larger on "
        f"{counts['sharper_trace']}/{seeds}, Keskar sharpness larger on "
        f"{counts['sharper_keskar']}/{seeds} ({large['keskar_sharpness']} % against "
        f"{small['keskar_sharpness']} %); loss gap larger on "
        f"{counts['larger_gap']}/{seeds} ({large['loss_gap']} against "
        f"{small['loss_gap']}); validation accuracy lower on "
        f"{counts['lower_accuracy']}/{seeds} ({large['val_accuracy']} % against "
        f"{small['val_accuracy']} %). The large run reached the small batch's "
        f"training loss (within 0.02 on the measurement subset) on "
        f"{counts['reached_target']}/{seeds} seeds after {large['epochs']} epochs. "
        + verdict(counts, seeds)
        + " Paired differences large − small (95 % t-interval over the seeds): "
        + "; ".join(
            f"{what} {_common.difference(*(_common.estimate(r['values'][key]) for r in (large, small)))}"
            for key, what in (
                ("lambda_max", "λ_max"),
                ("loss_gap", "loss gap"),
                ("val_accuracy", "validation accuracy (points)"),
            )
        )
        + ". Keskar et al. compare batch 256 with 10 % of the training set on fully "
        "connected and convolutional networks for MNIST, TIMIT and CIFAR-10/100; "
        "here the package's small CNN on the digits, batch "
        f"{settings['small_batch']} for {settings['epochs']} epochs "
        f"against {settings['large_batch']} for up to {settings['large_epochs']}, "
        "with the learning rates the experiment sets (not tuned per run)."
    )
    summary.text(
        "## 2. Between and around the two solutions\n\n"
        "Keskar et al.'s Figure 3: the loss along (1 − α) θ_small + α θ_large, on the "
        "training subset and the validation set, α from −1 to 2."
    )
    summary.figure("04_interpolation.png", "loss along the line between the solutions")
    mid = [float(np.max(r.train_line[10:21])) for r in results]
    ends = [max(r.train_line[10], r.train_line[20]) for r in results]
    left = [r.train_line[0] for r in results]
    right = [r.train_line[-1] for r in results]
    summary.text(
        "Between the solutions (0 ≤ α ≤ 1) the training loss rises at most to "
        f"{_common.spread(mid)} against {_common.spread(ends)} at the higher end: "
        + (
            "a barrier between them. "
            if np.all(np.subtract(mid, ends) > 0.05)
            else "no real barrier, one connected valley. "
        )
        + f"Beyond them it rises to {_common.spread(left)} at α = −1 (past the small "
        f"batch's solution) and {_common.spread(right)} at α = 2 (past the large "
        "batch's): "
        + (
            "steeper on the large batch's side on every seed, as in Keskar's figure."
            if all(b > a for a, b in zip(left, right))
            else "not steeper on the large batch's side on every seed."
        )
    )
    summary.text(
        "Li et al.'s filter-normalized surfaces of seed 0's solutions, on the "
        "measurement subset. Mean rise of the loss at radius "
        f"{SURFACE_RADIUS} in the two directions: "
        f"small batch {rises['small']:.3g}, large batch {rises['large']:.3g} "
        f"({'steeper' if rises['large'] > rises['small'] else 'not steeper'} "
        "around the large batch's solution; one seed, two directions)."
    )
    summary.figure("04_surfaces.png", "filter-normalized loss surfaces")
    if not remedies:
        return
    summary.text(
        "## 3. The remedies on the large batch\n\n"
        "Each remedy trains with the large batch for as many epochs as the large run "
        "took; Δ is its paired change from the large run of the same seed; 'gap "
        "smaller' and 'acc. higher' count seeds."
    )
    summary.figure("04_remedies.png", "change of gap against change of accuracy")
    summary.table(
        ["remedy", *REMEDY_COLUMNS, "gap smaller", "acc. higher", "flatter (λ_max)"]
        + ["verdict"],
        [
            [LABELS[n], *(str(rows[n][k]) for k in REMEDY_COLUMNS.values())]
            + [
                f"{int(np.sum(rows[n]['delta_loss_gap_values'] < 0))}/{seeds}",
                f"{int(np.sum(rows[n]['delta_val_accuracy_values'] > 0))}/{seeds}",
                f"{int(np.sum(rows[n]['delta_lambda_max_values'] < 0))}/{seeds}",
                remedy_verdict(rows[n], seeds),
            ]
            for n in remedies
        ],
    )


def verdict(counts: dict, seeds: int) -> str:
    """Which of sharpness and worse generalization held on every seed, in words."""
    measures = {
        "sharper_lambda": "λ_max",
        "sharper_trace": "the Hessian trace",
        "sharper_keskar": "Keskar's ε-sharpness",
    }
    every = [what for key, what in measures.items() if counts[key] == seeds]
    if len(every) == len(measures):
        sharp = "**The large batch is sharper on every seed, by all three measures"
    elif every:
        sharp = (
            f"**The large batch is sharper on every seed by {' and '.join(every)} only"
        )
    else:
        sharp = "**The large batch is sharper on every seed by none of the measures"
    if counts["larger_gap"] == seeds and counts["lower_accuracy"] == seeds:
        return sharp + ", and it generalizes worse on every seed.**"
    return (
        sharp + ", but it does not generalize worse on every seed** (gap larger on "
        f"{counts['larger_gap']}/{seeds}, accuracy lower on "
        f"{counts['lower_accuracy']}/{seeds}): Keskar's generalization gap does not "
        "reproduce at this scale."
    )


def remedy_verdict(row: dict, seeds: int) -> str:
    """What a remedy did to the large run's gap and accuracy, counted over seeds."""
    smaller = int(np.sum(row["delta_loss_gap_values"] < 0))
    higher = int(np.sum(row["delta_val_accuracy_values"] > 0))
    if smaller == seeds and higher == seeds:
        return "smaller gap and better accuracy on every seed"
    if smaller == seeds and row["delta_train_loss"].mean > 0 and higher == 0:
        return "smaller gap by fitting worse (train loss up, accuracy down)"
    accuracy = (
        "accuracy higher on no seed"
        if higher == 0
        else f"accuracy higher on {higher}/{seeds}"
    )
    if smaller == seeds:
        return f"smaller gap on every seed; {accuracy}"
    return f"gap smaller on {smaller}/{seeds} only: no reliable effect; {accuracy}"


if __name__ == "__main__":
    main()
