"""How large a batch? Steps to a target loss, the critical batch size and the noise scale.

The notes' section "Batch-size Matters" says that larger batches make the gradient less
noisy, so that fewer, larger steps can be taken — up to a point. Where is that point?
The field answers with one measurement (Shallue et al. 2019; McCandlish et al. 2018):
for each batch size B, the number of steps S needed to reach a fixed target loss, with
the learning rate tuned for that batch size. Doubling a small batch halves S (the
"perfect scaling" regime: the same examples E = B·S, in half the steps); past some
batch size, doubling B hardly lowers S and only doubles E.

McCandlish et al. derive the trade-off from a noisy quadratic model of SGD:

    S = S_min (1 + B_crit / B),    E = E_min (1 + B / B_crit),    B_crit = E_min / S_min,

equivalently (S / S_min − 1)(E / E_min − 1) = 1: S_min is the steps an infinitely
large batch would need, E_min the examples a batch of one would need, and the critical
batch size B_crit is where both are only twice their minimum. They predict B_crit by
the simple gradient noise scale, measured at the point of training where the target is
reached,

    B_simple = tr(Σ) / |G|²,

G the true gradient and Σ the covariance of the per-example gradients: the batch size
at which the noise of a batch gradient, tr(Σ)/B, equals the signal |G|².

The questions. (1) On the digits, how many steps and examples does plain SGD need to
reach a training cross-entropy of 0.1 at batch sizes 8 to 512, with η tuned per batch
size? (2) Does S = S_min (1 + B_crit / B) describe those counts, and what is B_crit?
(3) Does B_simple, measured with `keras_optnotes.callbacks.GradientNoiseScale`, predict
B_crit?

The setup (`keras_optnotes.experiments.critical_batch.run_critical_batch`, the same
experiment as `keras-optnotes critical-batch`, at a smaller size here). The MLP 64 →
64 → 64 → 10 (ReLU) on the 1,438 training digits (the validation fifth is not used: the
target is a training loss), plain gradient descent (θ ← θ − η g), batches of exactly B
examples drawn independently (uniformly, without replacement within a batch). After
every step the cross-entropy of the whole training set is computed in inference mode;
S is the first step at which it is ≤ the target. For each B, every η of a grid (0.05 to
1.6 in factors of 2 here) runs on the tuning seed and the η with the fewest steps is
kept (a run stops once it can no longer win); then fresh seeds (new initial weights and
batches) are run at that η. The fit minimizes Σ (log S − log S_min(1 + B_crit/B))² over
every report run; since log E = log B + log S, the same fit gives E_min = S_min B_crit.
At the weights where each report run first reached the target, B_simple is measured
from 16 big batches of 256 examples, each cut into 16 small batches of 16.

What differs from the papers. A training set of 1,438 examples, not an endless stream:
a batch of 512 is 36 % of it, and its gradient's noise is (N − B)/(N − 1) ≈ 0.64 of what
independent examples would give, so the largest batches look a little better than the
model predicts. One tuning seed and 3 report seeds here (the command's full run uses 2
and 8, a finer η grid and a lower target; its results are in
`docs/experiments/critical-batch.md`).

How to read the output. `09_critical_batch.png`: steps and examples to the target
against B (log–log; dots: seeds, markers: mean and 95 % t-interval), the fitted curves,
B_crit (dashed) and B_simple (dotted). `09_pareto.png`: the same runs as (S, E) pairs
with the hyperbola (S/S_min − 1)(E/E_min − 1) = 1. `09_critical_batch_size.md`: the
table and the numbers.

Run:

    python tutorials/09_critical_batch_size.py           # about 2 minutes on two idle cores
    python tutorials/09_critical_batch_size.py --quick   # smoke run, seconds

References:
    McCandlish, Kaplan, Amodei, OpenAI Dota Team, "An empirical model of large-batch
    training", arXiv:1812.06162, 2018.
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl, "Measuring the effects of
    data parallelism on neural network training", JMLR 20(112), 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import _common

OPTIONS = {"default_seeds": 3, "quick_seeds": 2}
if __name__ == "__main__":  # bad options fail at once, before TensorFlow loads
    _common.parse_options(None, __file__, __doc__, **OPTIONS)
_common.import_backend_quietly()

import numpy as np  # noqa: E402

from keras_optnotes import data  # noqa: E402
from keras_optnotes.experiments.critical_batch import (  # noqa: E402
    TABLE_COLUMNS,
    plot_critical_batch,
    run_critical_batch,
)
from keras_optnotes.report import new_figure  # noqa: E402

SETTINGS = {
    False: {
        "batch_sizes": (8, 16, 32, 64, 128, 256, 512),
        "learning_rates": (0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
        "target_loss": 0.1,
        "tuning_seeds": 1,
        "max_steps": 4000,
        "noise_measurements": 16,
    },
    True: {
        "batch_sizes": (8, 64, 512),
        "learning_rates": (0.4, 0.8),
        "target_loss": 0.5,
        "tuning_seeds": 1,
        "max_steps": 400,
        "noise_measurements": 2,
    },
}


def plot_pareto(result, staging):
    """Each report run as (S, E), the fitted hyperbola and its two asymptotes."""
    figure = new_figure(figsize=(6.5, 5), layout="constrained")
    axes = figure.subplots()
    from matplotlib import colormaps

    colors = iter(colormaps["viridis"](np.linspace(0, 0.9, len(result.batches))))
    for batch in result.batches:
        steps = np.array(batch.reached_steps(), np.float64)
        axes.plot(
            steps,
            steps * batch.batch_size,
            "o",
            color=next(colors),
            label=f"B = {batch.batch_size}",
        )
    fit = result.fit
    if fit is not None:
        grid = np.geomspace(0.5, 4096, 400)
        axes.plot(
            fit.steps(grid),
            fit.examples(grid),
            color="tab:orange",
            label="(S/S_min − 1)(E/E_min − 1) = 1",
        )
        axes.axvline(fit.min_steps, color="0.5", ls=":", label="S_min, E_min")
        axes.axhline(fit.min_examples, color="0.5", ls=":")
    _common.label(
        axes,
        "steps to target S",
        "examples to target E = B·S",
        "Steps against examples: the trade-off",
        log="xy",
        legend="x-small",
        grid=True,
    )
    return _common.save(figure, staging, "09_pareto.png")


def verdict(result) -> str:
    """What the fit and the noise scale say, in the measured numbers."""
    fit = result.fit
    critical = result.critical_batch_interval()
    noise = result.noise_scale()
    sizes = [b.batch_size for b in result.batches]
    text = (
        f"Fit over {fit.points} runs: S_min = {fit.min_steps:.1f} steps, E_min = "
        f"{fit.min_examples:.0f} examples, B_crit = {fit.critical_batch_size:.1f} "
        f"(root-mean-square log residual {fit.rms_log_residual:.3f}, i.e. the fitted "
        f"curve is within about {100 * (np.exp(fit.rms_log_residual) - 1):.0f} % of a "
        "typical run)"
    )
    if critical is not None and critical.count > 1:
        text += f"; fitted seed by seed, B_crit = {critical.format(digits=1)} (95 % CI)"
    text += ". "
    if noise is not None:
        interval = (
            ""
            if math.isnan(noise.low)
            else f" (95 % CI over the {noise.count} seeds' pooled values: "
            f"{noise.low:.1f} to {noise.high:.1f})"
        )
        text += (
            f"B_simple at the target, mean tr(Σ) / mean |G|² over the runs: "
            f"{noise.mean:.1f}{interval}, {noise.mean / fit.critical_batch_size:.1f}× "
            "B_crit. "
        )
    halves = [
        (
            small.batch_size,
            large.batch_size,
            np.mean(small.reached_steps()) / np.mean(large.reached_steps()),
        )
        for small, large in zip(result.batches, result.batches[1:])
        if small.reached_steps() and large.reached_steps()
    ]
    if halves:
        text += (
            "Steps saved from one batch size to the next (ratio of mean steps; "
            "perfect scaling would be the ratio of the batch sizes): "
            + ", ".join(f"{a}→{b}: {r:.2f}×" for a, b, r in halves)
            + "."
        )
    if sizes and max(sizes) > 0.25 * result.train_samples:
        text += (
            f" The batches up to {max(sizes)} examples are drawn from only "
            f"{result.train_samples}, so the largest have less gradient noise than "
            "independent examples would give."
        )
    return text


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the experiment; writes the figures and the summary; returns the result."""
    args = _common.parse_options(argv, __file__, __doc__, **OPTIONS)
    settings = SETTINGS[args.quick]
    title = "09 — the critical batch size: steps to a target against the batch size"
    with _common.output(args, title) as (staging, summary):
        result = run_critical_batch(data.load("digits"), seeds=args.seeds, **settings)
        plot_critical_batch(result, staging / "09_critical_batch.png")
        plot_pareto(result, staging)
        summary.text(
            f"Plain SGD on the digits MLP until the training cross-entropy is ≤ "
            f"{result.target_loss}; η tuned per batch size on the grid "
            f"{', '.join(f'{r:g}' for r in result.learning_rates)} for the fewest "
            f"steps (tuning seed {', '.join(map(str, result.tuning_seeds))}), reported "
            f"on seeds {', '.join(map(str, result.seeds))}."
        )
        summary.table(TABLE_COLUMNS, result.table_rows())
        summary.text(verdict(result))
        summary.figure("09_critical_batch.png", "steps and examples against B")
        summary.figure("09_pareto.png", "steps against examples")
    return {"result": result}


if __name__ == "__main__":
    main()
