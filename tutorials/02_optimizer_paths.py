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
# # 02 — The notes' seven update rules on five 2-D test functions: where does each one go?
#
# The notes' section "Optimization algorithms" (최적화 알고리즘): 1. Gradient Descent,
# 2. Momentum, 3. Nesterov Accelerated Gradient, 4. Adagrad, 5. Adadelta, 6. RMSprop,
# 7. Adam. The notes give each rule's equation and one sentence of what it does; of
# Nesterov they claim "극소점 부근에서 모멘텀때문에 수렴이 늦어지는 현상을 완화해준다"
# (near a minimum it mitigates the slow convergence that momentum causes), and they
# write Nesterov with the gradient at a look-ahead point,
#
# $$a_{t+1} = \beta a_t + \nabla L(\theta_t - \eta \beta a_t), \qquad
#   \theta_{t+1} = \theta_t - \eta a_{t+1},$$
#
# which an optimizer that only sees the gradient at the current weights cannot
# evaluate; `keras_optnotes.optimizers.NesterovMomentum` keeps the look-ahead point
# $\varphi = \theta - \eta \beta a$ as the weights instead: $a \leftarrow \beta a + g$,
# $\varphi \leftarrow \varphi - \eta (g + \beta a)$.
#
# **The questions.** (1) What paths do the seven rules take on an ill-conditioned
# quadratic, Rosenbrock's valley, a saddle point and Beale's function, and how fast does
# each reach the minimum? (2) Does Nesterov really overshoot less than momentum near the
# minimum, and reach it sooner? (3) Are the notes' look-ahead form and the implemented
# form the same algorithm — the same iterates, not just similar ones? (4) Is β = 0.9,
# the default everyone uses, a good momentum for the quadratic — and which β is best?
# (5) Adagrad, RMSprop and Adam scale each coordinate on its own: is their speed on the
# quadratic a property of the rule, or of the quadratic's axes being the coordinate
# axes?
#
# **Run it.** `pip install "keras-optnotes[all]" tensorflow` (or `jax`, or `torch`:
# the rules run on any Keras backend). Set `QUICK = True` below for a smoke run of
# under three minutes; the full run (`QUICK = False`) took the time printed by the last
# cell, with the package version beside it. Nothing here is random, so there are no
# seeds.

# %% tags=["parameters"]
QUICK = False  # True: 40 steps on two learning rates per rule, what CI runs
SEEDS = None  # nothing here is random: None and any number give the same run
OUT = "optnotes-report/tutorials"  # where the figures and the numbers are written

# %%
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_optnotes import optimizers
from keras_optnotes.experiments import descend, run_description
from keras_optnotes.report import (
    label_axes,
    markdown_table,
    new_figure,
    show_markdown,
    write_json,
)

started = time.perf_counter()
out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)
seeds = SEEDS or 1

# %% [markdown]
# ## The setup
#
# Each rule of `keras_optnotes.optimizers` (as `keras.optimizers.Optimizer`s, stepped
# with `apply`, float64) runs 500 steps from a fixed start on each function, at every
# learning rate of a grid of seven half-decades; the tables report, for each rule and
# function, the learning rate that reached $f - f^* < 10^{-6}$ in the fewest steps
# (or, when none did, the one with the lowest final $f - f^*$). Momentum and Nesterov
# use β = 0.9. Adadelta's grid is centred on the paper's η = 1 (the notes say it "has
# no learning rate"; the grid shows what that costs).

# %%
TOLERANCE = 1e-6
MOMENTUM = 0.9
HALF_DECADES = 10.0 ** np.arange(-4.0, 2.01, 0.5)
# Each rule's grid: seven half-decades around where it works on these functions.
GRIDS = {
    "GradientDescent": HALF_DECADES[1:8],  # 3e-4 … 0.3
    "Momentum": HALF_DECADES[0:7],  # 1e-4 … 0.1
    "NesterovMomentum": HALF_DECADES[0:7],
    "Adagrad": HALF_DECADES[4:11],  # 1e-2 … 10
    "Adadelta": HALF_DECADES[6:13],  # 0.1 … 100
    "RMSprop": HALF_DECADES[2:9],  # 1e-3 … 1
    "Adam": HALF_DECADES[2:9],
}
SETTINGS = {
    False: {
        "steps": 500,
        "grid": slice(None),
        "overshoot_steps": 600,
        # Every 0.05, and Polyak's β* = ((√50 − 1)/(√50 + 1))² itself (to 4 digits).
        "betas": tuple(
            sorted(
                (
                    *np.round(np.arange(0.0, 0.951, 0.05), 2),
                    0.97,
                    0.99,
                    round(((math.sqrt(50.0) - 1) / (math.sqrt(50.0) + 1)) ** 2, 4),
                )
            )
        ),
        "sweep_rates": np.geomspace(1e-3, 0.1, 201),
        "sweep_steps": 1500,
    },
    True: {
        "steps": 40,
        "grid": slice(2, 4),
        "overshoot_steps": 40,
        "betas": (0.0, 0.55, 0.6, 0.9),
        "sweep_rates": np.geomspace(0.02, 0.1, 25),
        "sweep_steps": 300,
    },
}
settings = SETTINGS[QUICK]
steps = settings["steps"]

# %% [markdown]
# The five functions:
#
# - quadratic: $f = \frac12 (x^2 + 50 y^2)$, condition number κ = 50, start (−4, 1),
#   $f^* = 0$ at 0;
# - Rosenbrock: $f = (1 - x)^2 + 100 (y - x^2)^2$, start (−1.2, 1), $f^* = 0$ at
#   (1, 1);
# - saddle: $f = \frac12 x^2 - \frac12 y^2 + \frac14 y^4$, start (1, 10⁻³) next to the
#   saddle at the origin, $f^* = -\frac14$ at (0, ±1);
# - Beale: $f = \sum_i (c_i - x + x y^i)^2$, c = (1.5, 2.25, 2.625), start (1, 1.5),
#   $f^* = 0$ at (3, 0.5);
# - rotated quadratic: the same quadratic turned by 45°,
#   $f = \frac12 \theta^\top R \operatorname{diag}(1, 50) R^\top \theta$ with R the
#   rotation by 45°, started at R (−4, 1): every rotation-invariant rule (gradient
#   descent, momentum, Nesterov) takes exactly the same steps as on the quadratic, so
#   any difference is the rule's dependence on the coordinate axes.
#
# Each gradient is written out by hand, in NumPy float64, for all runs at once (one
# row per run).


# %%
@dataclasses.dataclass(frozen=True)
class TestFunction:
    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    gradient: Callable[[np.ndarray], np.ndarray]  # (runs, 2) → (runs, 2)
    start: tuple[float, float]
    minimum: float
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the contour plot
    minimizers: tuple[tuple[float, float], ...]


CURVATURES = (1.0, 50.0)  # μ and L of the quadratic
ROTATION = np.array([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2.0)  # 45°
ROTATED_HESSIAN = ROTATION @ np.diag(CURVATURES) @ ROTATION.T  # [[25.5, −24.5], …]
ROTATED_START = tuple(ROTATION @ np.array([-4.0, 1.0]))
BEALE = (1.5, 2.25, 2.625)


def quadratic_gradient(p):
    return np.stack([p[:, 0], 50.0 * p[:, 1]], axis=1)


def rotated_value(x, y):
    (a, b), (_, c) = ROTATED_HESSIAN
    return 0.5 * (a * x**2 + 2 * b * x * y + c * y**2)


def rotated_gradient(p):
    return p @ ROTATED_HESSIAN  # symmetric: (H p)ᵀ row by row


def rosenbrock_gradient(p):
    x, y = p[:, 0], p[:, 1]
    return np.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], axis=1)


def saddle_gradient(p):
    return np.stack([p[:, 0], -p[:, 1] + p[:, 1] ** 3], axis=1)


def beale_value(x, y):
    return sum((c - x + x * y ** (i + 1)) ** 2 for i, c in enumerate(BEALE))


def beale_gradient(p):
    x, y = p[:, 0], p[:, 1]
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for i, c in enumerate(BEALE, start=1):
        r = c - x + x * y**i
        dx += 2 * r * (y**i - 1)
        dy += 2 * r * i * x * y ** (i - 1)
    return np.stack([dx, dy], axis=1)


FUNCTIONS = (
    TestFunction(
        "quadratic",
        lambda x, y: 0.5 * (x**2 + 50 * y**2),
        quadratic_gradient,
        (-4.0, 1.0),
        0.0,
        (-4.5, 4.5, -1.5, 1.5),
        ((0.0, 0.0),),
    ),
    TestFunction(
        "Rosenbrock",
        lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
        rosenbrock_gradient,
        (-1.2, 1.0),
        0.0,
        (-2.0, 2.0, -1.0, 3.0),
        ((1.0, 1.0),),
    ),
    TestFunction(
        "saddle",
        lambda x, y: 0.5 * x**2 - 0.5 * y**2 + 0.25 * y**4,
        saddle_gradient,
        (1.0, 1e-3),
        -0.25,
        (-1.5, 1.5, -1.6, 1.6),
        ((0.0, 1.0), (0.0, -1.0)),
    ),
    TestFunction(
        "Beale",
        beale_value,
        beale_gradient,
        (1.0, 1.5),
        0.0,
        (-0.5, 4.0, -1.5, 2.0),
        ((3.0, 0.5),),
    ),
    TestFunction(
        "rotated quadratic",
        rotated_value,
        rotated_gradient,
        ROTATED_START,
        0.0,
        (-4.5, 4.5, -3.0, 3.0),
        ((0.0, 0.0),),
    ),
)

# %% [markdown]
# One float64 variable of shape (5, 2) carries one run on each function: row k is a
# point of `FUNCTIONS[k]`, and since every rule is element-wise the rows are
# independent runs that share the rule and its learning rate.
# `keras_optnotes.experiments.descend` steps it with `optimizer.apply`.


# %%
def stacked_gradient(p: np.ndarray) -> np.ndarray:
    """Row k of `p` is a point of FUNCTIONS[k]: one variable carries all five runs."""
    return np.concatenate(
        [f.gradient(p[k : k + 1]) for k, f in enumerate(FUNCTIONS)], axis=0
    )


def gaps(path: np.ndarray) -> np.ndarray:
    """f − f* along a stacked path (steps + 1, 5, 2) → (steps + 1, 5)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.stack(
            [
                f.value(path[:, k, 0], path[:, k, 1]) - f.minimum
                for k, f in enumerate(FUNCTIONS)
            ],
            axis=1,
        )


def steps_to_tolerance(gap: np.ndarray, tolerance: float = TOLERANCE) -> int | None:
    """The first step from which f − f* stays below `tolerance`, or None."""
    below = np.isfinite(gap) & (gap < tolerance)
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1] + 1) if above.size else 0


def steps_text(steps: int | None, limit: int) -> str:
    return str(steps) if steps is not None else f"> {limit}"


def run_grid(steps: int, grid: slice) -> dict:
    """Every rule at every learning rate of its grid on the five functions:
    {(rule, learning rate): path}."""
    start = np.array([f.start for f in FUNCTIONS])
    runs = {}
    for rule, rates in GRIDS.items():
        for rate in rates[grid]:
            kwargs = {"momentum": MOMENTUM} if "Momentum" in rule else {}
            optimizer = optimizers.get(rule, learning_rate=float(rate), **kwargs)
            runs[rule, float(rate)] = descend(optimizer, stacked_gradient, start, steps)
    return runs


def choose(runs: dict) -> dict:
    """For each rule and function: the learning rate that converged fastest (else the
    lowest final gap), its path, gaps and steps to tolerance;
    {rule: {function: row}}."""
    chosen = {rule: {} for rule in GRIDS}
    ranks = {}
    for (rule, rate), path in runs.items():
        gap = gaps(path)
        for k, function in enumerate(FUNCTIONS):
            steps = steps_to_tolerance(gap[:, k])
            final = gap[-1, k] if np.isfinite(gap[-1, k]) else np.inf
            rank = (steps if steps is not None else np.inf, final)
            best = ranks.get((rule, function.name))
            if best is None or rank < best:
                ranks[rule, function.name] = rank
                chosen[rule][function.name] = {
                    "learning_rate": rate,
                    "path": path[:, k],
                    "gap": gap[:, k],
                    "steps": steps,
                    "final_gap": float(gap[-1, k]),
                }
    return chosen


# %%
runs = run_grid(steps, settings["grid"])
chosen = choose(runs)
show_markdown(
    f"Each rule ran {steps} steps from the same start at every η of its grid "
    "(float64, `optimizer.apply`); the table shows the η that reached "
    f"f − f* < {TOLERANCE:g} in the fewest steps, else the lowest final gap. "
    f"Momentum and Nesterov use β = {MOMENTUM}.\n\n"
    + markdown_table(
        ["rule", *(f"{f.name}: η, steps to 1e-6, final f − f*" for f in FUNCTIONS)],
        [
            [
                rule,
                *(
                    f"{chosen[rule][f.name]['learning_rate']:.3g}, "
                    f"{steps_text(chosen[rule][f.name]['steps'], steps)}, "
                    f"{chosen[rule][f.name]['final_gap']:.2g}"
                    for f in FUNCTIONS
                ),
            ]
            for rule in GRIDS
        ],
    )
)

# %% [markdown]
# ## The paths
#
# How to read it: each panel is one function's contours (grey; red stars: the
# minima, black triangle: the start) with the path of every rule at its chosen
# learning rate, one dot per step.


# %%
def plot_paths(chosen: dict, title: str, path=None):
    """The paths of the seven rules over the contours of each function."""
    figure = new_figure(figsize=(18, 10), layout="constrained")
    panels = figure.subplots(2, 3).ravel()
    panels[-1].set_axis_off()
    for axes, function in zip(panels, FUNCTIONS):
        x0, x1, y0, y1 = function.box
        x, y = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        z = function.value(x, y) - function.minimum
        levels = np.geomspace(max(z.min(), 1e-3), z.max(), 25)
        if function.name == "saddle":  # f − f* ≥ 0 everywhere, but spans little
            levels = np.linspace(z.min(), z.max(), 25)
        axes.contour(x, y, z, levels=levels, cmap="Greys", linewidths=0.6)
        for rule in GRIDS:
            best = chosen[rule][function.name]
            points = best["path"]
            inside = np.all(np.isfinite(points), axis=1)
            axes.plot(
                points[inside, 0],
                points[inside, 1],
                lw=1.2,
                marker=".",
                markersize=2,
                label=f"{rule} (η={best['learning_rate']:.3g})",
            )
        axes.plot(*function.start, "k^", markersize=8, label="start")
        for point in function.minimizers:
            axes.plot(*point, "r*", markersize=12)
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
        label_axes(
            axes, "x", "y", f"{function.name} (red star: minimum)", legend="x-small"
        )
    figure.suptitle(title)
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_paths(
    chosen, f"{steps} steps of each rule at its best η", out / "02_optimizer_paths.png"
)

# %% [markdown]
# ## Convergence
#
# How to read it: $f - f^*$ against the step (log scale, floored at 10⁻¹⁶ where a
# run lands exactly on the minimum), one panel per function, each rule at its chosen
# learning rate; the dotted line is the tolerance 10⁻⁶.


# %%
def plot_convergence(chosen: dict, steps: int, path=None):
    """f − f* against the step for every rule, one panel per function."""
    figure = new_figure(figsize=(18, 8), layout="constrained")
    panels = figure.subplots(2, 3).ravel()
    panels[-1].set_axis_off()
    for axes, function in zip(panels, FUNCTIONS):
        for rule in GRIDS:
            best = chosen[rule][function.name]
            axes.plot(
                np.maximum(best["gap"], 1e-16),
                label=f"{rule} (η={best['learning_rate']:.3g})",
            )
        axes.axhline(TOLERANCE, color="k", ls=":", lw=0.8, label="tolerance 1e-6")
        label_axes(
            axes,
            "step",
            "f − f* (floored at 1e-16)",
            function.name,
            log="y",
            legend="x-small",
        )
        axes.set_ylim(1e-16, None)
    figure.suptitle(f"Convergence of the seven rules, {steps} steps, best η of each")
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_convergence(chosen, steps, out / "02_convergence.png")

# %% [markdown]
# ## Which momentum β? A sweep on the quadratic
#
# Heavy-ball momentum ($a \leftarrow \beta a + g$, $\theta \leftarrow \theta - \eta a$)
# on the quadratic, at every β of a grid from 0 to 0.99, each with the η of a fine log
# grid that reaches $f - f^* < 10^{-6}$ in the fewest steps. On a quadratic with
# curvatures μ = 1 and L = 50 the iteration is linear: per curvature λ, the error
# obeys $e_{t+1} = (1 + \beta - \eta\lambda) e_t - \beta e_{t-1}$, whose rate is the
# larger root modulus of $z^2 - (1 + \beta - \eta\lambda) z + \beta = 0$, and the worst
# of the two curvatures sets the speed. Minimizing that rate over η and β (Polyak
# 1964) gives, in closed form,
#
# $$\eta^* = \frac{4}{(\sqrt L + \sqrt\mu)^2}, \qquad
#   \beta^* = \left(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\right)^2, \qquad
#   \text{rate}^* = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1},$$
#
# i.e. β* = 0.566, η* = 0.0614 and rate* = 0.752 per step for κ = 50 (β* is the
# *square* of the rate, not the rate itself). The sweep measures the best step count
# per β and sets it beside $\log(f_0 / 10^{-6}) / (-2 \log \text{rate}(\beta))$, the
# count the best rate at that β predicts (f falls as $\text{rate}^{2t}$). Momentum's
# update is linear in $\eta g$, so one `Momentum(learning_rate=1, momentum=β)` stepping
# on $\eta \nabla f$ gives exactly the iterates of η on $\nabla f$: one variable whose
# rows carry every η of the grid runs them all at once.

# %%
KAPPA = CURVATURES[1] / CURVATURES[0]
OPTIMAL_BETA = ((math.sqrt(KAPPA) - 1) / (math.sqrt(KAPPA) + 1)) ** 2
OPTIMAL_RATE = 4.0 / (math.sqrt(CURVATURES[0]) + math.sqrt(CURVATURES[1])) ** 2
OPTIMAL_CONTRACTION = (math.sqrt(KAPPA) - 1) / (math.sqrt(KAPPA) + 1)


def heavy_ball_contraction(learning_rate, momentum, curvatures=CURVATURES):
    """The heavy ball's rate on a quadratic: the largest root modulus, over the
    curvatures λ, of z² − (1 + β − ηλ) z + β = 0 (the error shrinks by it per step)."""
    worst = 0.0
    for curvature in curvatures:
        b = 1.0 + momentum - learning_rate * curvature
        roots = np.roots([1.0, -b, momentum])
        worst = max(worst, float(np.max(np.abs(roots))))
    return worst


def momentum_sweep(betas, rates, steps: int) -> dict:
    """For each β: the steps to f − f* < 1e-6 on the quadratic at every η of `rates`
    (`Momentum` with η = 1 stepping on η ∇f, one row per η), the best η and count,
    and the count the best contraction at that β predicts."""
    quadratic = FUNCTIONS[0]
    rates = np.asarray(rates, np.float64)
    start = np.repeat(np.array([quadratic.start]), len(rates), axis=0)
    initial_gap = quadratic.value(*quadratic.start) - quadratic.minimum
    rows = []
    for beta in betas:
        optimizer = optimizers.Momentum(learning_rate=1.0, momentum=float(beta))
        path = descend(
            optimizer, lambda p: rates[:, None] * quadratic.gradient(p), start, steps
        )
        with np.errstate(over="ignore", invalid="ignore"):  # the η that diverge
            gap = quadratic.value(path[..., 0], path[..., 1]) - quadratic.minimum
        counts = [steps_to_tolerance(gap[:, k]) for k in range(len(rates))]
        reached = [k for k, c in enumerate(counts) if c is not None]
        best = min(reached, key=lambda k: (counts[k], rates[k])) if reached else None
        contraction = min(heavy_ball_contraction(r, beta) for r in rates)
        rows.append(
            {
                "beta": float(beta),
                "steps": None if best is None else counts[best],
                "learning_rate": None if best is None else float(rates[best]),
                "path": None if best is None else path[:, best],
                "contraction": contraction,
                "predicted_steps": math.log(initial_gap / TOLERANCE)
                / (-2.0 * math.log(contraction)),
            }
        )
    return {"rows": rows, "steps": steps}


def best_beta(sweep: dict) -> dict:
    """The sweep's row with the fewest steps (ties: the smaller β)."""
    reached = [row for row in sweep["rows"] if row["steps"] is not None]
    return min(reached, key=lambda row: (row["steps"], row["beta"]))


# %%
rates = settings["sweep_rates"]
sweep = momentum_sweep(settings["betas"], rates, settings["sweep_steps"])
limit = sweep["steps"]
show_markdown(
    f"For each β, {len(rates)} log-spaced η from {rates[0]:.3g} to {rates[-1]:.3g}; "
    f"the fewest steps to f − f* < {TOLERANCE:g} (within {limit} steps). The "
    "closed form (Polyak): η* = 4/(√L + √μ)² = "
    f"{OPTIMAL_RATE:.4f}, β* = ((√κ − 1)/(√κ + 1))² = {OPTIMAL_BETA:.4f}, "
    f"contraction (√κ − 1)/(√κ + 1) = {OPTIMAL_CONTRACTION:.4f} per step.\n\n"
    + markdown_table(
        ["β", "best η", "steps to 1e-6", "predicted steps", "best contraction"],
        [
            [
                r["beta"],
                r["learning_rate"],
                steps_text(r["steps"], limit),
                r["predicted_steps"],
                r["contraction"],
            ]
            for r in sweep["rows"]
        ],
    )
)


# %%
def sweep_verdict(sweep: dict) -> str:
    """The measured best β against the closed form, and what β = 0.9 costs."""
    rows, limit = sweep["rows"], sweep["steps"]
    best = best_beta(sweep)
    at_09 = next((r for r in rows if r["beta"] == 0.9), None)
    text = (
        f"Measured: the fewest steps, {best['steps']}, at β = {best['beta']:g} "
        f"(η = {best['learning_rate']:.4g}); the closed form's β* = {OPTIMAL_BETA:.3f} "
        f"and η* = {OPTIMAL_RATE:.4f}."
    )
    at_optimum = min(rows, key=lambda r: abs(r["beta"] - OPTIMAL_BETA))
    if abs(at_optimum["beta"] - OPTIMAL_BETA) < 1e-3 and at_optimum["steps"]:
        text += (
            f" At β* itself (η tuned: {at_optimum['learning_rate']:.4g}): "
            f"{at_optimum['steps']} steps against "
            f"{at_optimum['predicted_steps']:.1f} predicted from its best "
            "contraction on the η grid. At η* exactly both curvatures have a double "
            "root, whose error decays as t·rate^t rather than rate^t: the fastest "
            "contraction is not quite the fewest steps to a fixed tolerance."
        )
    if at_09 is not None:
        text += (
            f" At the usual β = 0.9 the best η needs "
            f"{steps_text(at_09['steps'], limit)} steps"
            + (
                f", {at_09['steps'] / best['steps']:.1f}× as many."
                if at_09["steps"]
                else "."
            )
            + " Too much momentum makes the slow direction oscillate (its roots are "
            f"complex with modulus √β, {math.sqrt(0.9):.3f} at β = 0.9), too little "
            "leaves the stiff one limiting η."
        )
    return text


show_markdown(sweep_verdict(sweep))

# %% [markdown]
# ## The same quadratic, rotated by 45°
#
# Steps to $f - f^* < 10^{-6}$ at each rule's best η of its grid, from the same start
# turned with the function (so $f_0$ is the same). Gradient descent and momentum are
# rotation-invariant; Adagrad, RMSprop and Adam scale each coordinate on its own.

# %%
# Rules whose steps depend on the coordinate axes, compared on the two quadratics.
ROTATION_RULES = ("GradientDescent", "Momentum", "Adagrad", "RMSprop", "Adam")


def rotation_rows(chosen: dict, limit: int) -> list[list]:
    """Steps to 1e-6 (at each rule's best η) on the quadratic and the rotated one."""
    rows = []
    for rule in ROTATION_RULES:
        aligned = chosen[rule]["quadratic"]
        rotated = chosen[rule]["rotated quadratic"]
        rows.append(
            [
                rule,
                f"{steps_text(aligned['steps'], limit)} "
                f"(η={aligned['learning_rate']:.3g})",
                f"{steps_text(rotated['steps'], limit)} "
                f"(η={rotated['learning_rate']:.3g})",
            ]
        )
    return rows


def rotation_verdict(chosen: dict, limit: int) -> str:
    """Which rules take the same steps on both quadratics, and which are slower."""
    aligned = {r: chosen[r]["quadratic"]["steps"] for r in ROTATION_RULES}
    rotated = {r: chosen[r]["rotated quadratic"]["steps"] for r in ROTATION_RULES}
    gd = rotated["GradientDescent"]
    slower = [
        r
        for r in ("Adagrad", "RMSprop", "Adam")
        if gd is not None and (rotated[r] is None or rotated[r] > gd)
    ]
    invariant = [r for r in ("GradientDescent", "Momentum") if aligned[r] == rotated[r]]
    return (
        f"Same steps on both quadratics: {', '.join(invariant) or 'none'} (gradient "
        "descent and momentum are rotation-invariant). The per-coordinate rules' "
        "counts change with the rotation: on the axis-aligned quadratic Adagrad needs "
        f"{steps_text(aligned['Adagrad'], limit)} steps against gradient descent's "
        f"{steps_text(aligned['GradientDescent'], limit)}; rotated, "
        f"{steps_text(rotated['Adagrad'], limit)}. Slower than gradient descent on "
        f"the rotated quadratic: {', '.join(slower) or 'none'}. A per-coordinate scale "
        "can undo the curvature only when the curvature's axes are the coordinates."
    )


show_markdown(
    markdown_table(
        ["rule", "quadratic (axis-aligned)", "rotated by 45°"],
        rotation_rows(chosen, steps),
    )
    + "\n"
    + rotation_verdict(chosen, steps)
)

# %% [markdown]
# How to read it: left, the sweep's fewest steps against β (dots) beside the count
# the best rate at that β predicts (grey line) and the closed form's β* (dashed);
# right, the steps of each rule on the quadratic and on the rotated one (log scale;
# a bar at the limit means the rule did not reach the tolerance).


# %%
def plot_momentum_and_rotation(sweep: dict, chosen: dict, limit: int, path=None):
    """The momentum sweep (steps against β) and the aligned against the rotated
    quadratic."""
    figure = new_figure(figsize=(13, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    rows = [r for r in sweep["rows"] if r["steps"] is not None]
    left.plot(
        [r["beta"] for r in sweep["rows"]],
        [r["predicted_steps"] for r in sweep["rows"]],
        color="0.5",
        label="predicted: log(f₀/1e-6) / (−2 log rate), best η at each β",
    )
    left.plot(
        [r["beta"] for r in rows],
        [r["steps"] for r in rows],
        "o",
        color="tab:blue",
        label="measured: fewest steps over the η grid",
    )
    left.axvline(
        OPTIMAL_BETA,
        color="tab:red",
        ls="--",
        label=f"closed form β* = ((√κ−1)/(√κ+1))² = {OPTIMAL_BETA:.3f}",
    )
    label_axes(
        left,
        "momentum β",
        "steps to f − f* < 1e-6",
        "Heavy ball on the quadratic (κ = 50), η tuned per β",
        log="y",
        legend="small",
    )
    names = ["quadratic", "rotated quadratic"]
    width = 0.38
    for offset, name in zip((-width / 2, width / 2), names, strict=True):
        counts = [chosen[rule][name]["steps"] for rule in ROTATION_RULES]
        right.bar(
            np.arange(len(ROTATION_RULES)) + offset,
            [limit if c is None else c for c in counts],
            width,
            label=f"{name}"
            + (" (bars at the limit: not reached)" if None in counts else ""),
        )
    right.set_xticks(np.arange(len(ROTATION_RULES)), ROTATION_RULES, fontsize="small")
    label_axes(
        right,
        "rule (at its best η)",
        "steps to f − f* < 1e-6",
        "The same quadratic, axis-aligned and rotated by 45°",
        log="y",
        legend="small",
    )
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_momentum_and_rotation(sweep, chosen, steps, out / "02_momentum_beta.png")

# %% [markdown]
# ## Momentum's overshoot against Nesterov's correction
#
# Momentum and Nesterov at the same η = 0.01 and the same β (0.8, 0.9, 0.95) on the
# quadratic from (−4, 1): how far past the minimum the slow coordinate x swings (the
# largest x after x, starting at −4, crosses 0), how many times it crosses 0, and the
# steps to $\|\theta - \theta^*\| < 10^{-6}$.

# %%
OVERSHOOT_MOMENTA = (0.8, 0.9, 0.95)
OVERSHOOT_LEARNING_RATE = 0.01


def overshoot(momentum: float, steps: int) -> dict:
    """Momentum and Nesterov at the same η and β on the quadratic: the slow
    coordinate's swing past the minimum and the steps to ‖θ‖ < 1e-6."""
    quadratic = FUNCTIONS[0]
    rows = {}
    for rule in ("Momentum", "NesterovMomentum"):
        optimizer = optimizers.get(
            rule, learning_rate=OVERSHOOT_LEARNING_RATE, momentum=momentum
        )
        path = descend(optimizer, quadratic.gradient, [quadratic.start], steps)
        x = path[:, 0, 0]
        distance = np.linalg.norm(path[:, 0], axis=1)
        rows[rule] = {
            "path": path[:, 0],
            "distance": distance,
            # x starts at −4 < 0: anything above 0 is a swing past the minimum.
            "overshoot": float(max(0.0, x.max())),
            "crossings": int(np.sum(np.diff(np.sign(x)) != 0)),
            "steps": steps_to_tolerance(distance, TOLERANCE),
        }
    return rows


def nesterov_verdict(overshoots: dict, limit: int) -> str:
    """The notes' claim (Nesterov mitigates momentum's slow convergence near the
    minimum), judged on the overshoot table."""

    def steps(row):
        return row["steps"] or limit + 1

    smaller = [
        b
        for b, r in overshoots.items()
        if r["NesterovMomentum"]["overshoot"] < r["Momentum"]["overshoot"]
    ]
    sooner = [
        b
        for b, r in overshoots.items()
        if steps(r["NesterovMomentum"]) < steps(r["Momentum"])
    ]
    later = [
        b
        for b, r in overshoots.items()
        if steps(r["NesterovMomentum"]) > steps(r["Momentum"])
    ]
    betas = ", ".join
    return (
        f"Nesterov's swing past the minimum is smaller for β = "
        f"{betas(map(str, smaller)) or 'none'} (of {betas(map(str, overshoots))}); "
        f"it reaches ‖θ‖ < 1e-6 sooner for β = {betas(map(str, sooner)) or 'none'}"
        + (f" and later for β = {betas(map(str, later))}" if later else "")
        + ". "
        + (
            "**The claim holds for the overshoot; for the time to converge it "
            "depends on β.**"
            if smaller and later
            else "**The claim holds** on this quadratic."
            if smaller and sooner
            else "**The claim does not hold** on this quadratic."
        )
    )


# %%
overshoot_steps = settings["overshoot_steps"]
overshoots = {beta: overshoot(beta, overshoot_steps) for beta in OVERSHOOT_MOMENTA}
show_markdown(
    markdown_table(
        [
            "β",
            "rule",
            "swing past 0 (x)",
            "crossings of x = 0",
            "steps to ‖θ‖ < 1e-6",
        ],
        [
            [
                beta,
                rule,
                row["overshoot"],
                row["crossings"],
                steps_text(row["steps"], overshoot_steps),
            ]
            for beta, rows in overshoots.items()
            for rule, row in rows.items()
        ],
    )
    + "\n"
    + nesterov_verdict(overshoots, overshoot_steps)
)

# %% [markdown]
# How to read it: left, the slow coordinate x over the first 150 steps at β = 0.9
# (above 0: past the minimum); right, the distance to the minimum (log scale).


# %%
def plot_overshoot(overshoots: dict, path=None):
    """Momentum against Nesterov at β = MOMENTUM: x over the first steps, and the
    distance to the minimum."""
    figure = new_figure(figsize=(12, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    rows = overshoots[MOMENTUM]
    for rule, row in rows.items():
        left.plot(row["path"][:150, 0], label=f"{rule}: x (slow axis)")
        right.plot(np.maximum(row["distance"], 1e-16), label=rule)
    left.axhline(0.0, color="k", lw=0.8)
    label_axes(
        left,
        "step (the first 150)",
        "x, the slow coordinate (minimum at 0)",
        f"Quadratic, η={OVERSHOOT_LEARNING_RATE}, β={MOMENTUM}: swings past the minimum",
    )
    right.axhline(TOLERANCE, color="k", ls=":", lw=0.8, label="1e-6")
    label_axes(right, "step", "‖θ − θ*‖", "Distance to the minimum", log="y")
    if path is not None:
        figure.savefig(path, dpi=50 if QUICK else 110)
    return figure


plot_overshoot(overshoots, out / "02_momentum_vs_nesterov.png")

# %% [markdown]
# ## The notes' look-ahead Nesterov and the implemented one
#
# The notes' form is computed here in NumPy, float64, from their two equations; the
# package's `NesterovMomentum` weights $\varphi_t$ should equal the look-ahead point
# $\theta_t - \eta\beta a_t$, and its accumulator the notes' $a_t$, for every
# Nesterov run of the grid.

# %%
BOUNDED = 1e6


def notes_nesterov(gradient, start, learning_rate, momentum, steps):
    """The notes' look-ahead form, in NumPy float64: θ_t and a_t for t = 0..steps."""
    theta = np.array(start, dtype=np.float64)
    a = np.zeros_like(theta)
    thetas, accumulators = [theta.copy()], [a.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            a = momentum * a + gradient(theta - learning_rate * momentum * a)
            theta = theta - learning_rate * a
            thetas.append(theta.copy())
            accumulators.append(a.copy())
    return np.stack(thetas), np.stack(accumulators)


def relative_max(value, reference) -> float:
    """Largest |value − reference| / (1 + |reference|) where |reference| < BOUNDED:
    a diverging run (|θ| up to 1e80 on Rosenbrock at a too-large η) amplifies
    rounding by its own growth, which says nothing about the two forms."""
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.abs(value - reference) / (1.0 + np.abs(reference))
        bounded = np.isfinite(error) & (np.abs(reference) < BOUNDED)
    return float(error[bounded].max()) if bounded.any() else float("nan")


def nesterov_forms_difference(learning_rate, momentum, steps, gradient, start):
    """Largest |φ_t − (θ_t − ηβa_t)| and |a_t(package) − a_t(notes)| over the run.

    φ_t are the package's `NesterovMomentum` weights, θ_t and a_t the notes' iterates.
    Both are relative to 1 + |value| so that runs on large coordinates compare alike;
    non-finite (diverged) entries are left out.
    """
    optimizer = optimizers.NesterovMomentum(
        learning_rate=learning_rate, momentum=momentum
    )
    phi, a_package = descend(
        optimizer, gradient, start, steps, record=lambda o: o.accumulators[0].numpy()
    )
    # Keras keeps the learning rate in a float32 variable whatever the weights' dtype,
    # so the optimizer steps with η rounded to float32; the reference must too.
    rate = float(np.float32(learning_rate))
    theta, a_notes = notes_nesterov(gradient, start, rate, momentum, steps)
    lookahead = theta - rate * momentum * a_notes
    return relative_max(phi, lookahead), relative_max(a_package, a_notes[1:])


# %%
start = np.array([f.start for f in FUNCTIONS])
nesterov = {
    rate: nesterov_forms_difference(rate, MOMENTUM, steps, stacked_gradient, start)
    for (rule, rate) in runs
    if rule == "NesterovMomentum"
}
worst_phi = max(v[0] for v in nesterov.values())
worst_a = max(v[1] for v in nesterov.values())
show_markdown(
    f"Over {len(nesterov)} learning rates × {len(FUNCTIONS)} functions × {steps} "
    f"steps (where the run stayed bounded, |θ| < {BOUNDED:g}), the package's "
    "weights φ_t against the notes' look-ahead point θ_t − ηβa_t "
    "(computed in NumPy from a_{t+1} = βa_t + ∇L(θ_t − ηβa_t), θ_{t+1} = "
    "θ_t − ηa_{t+1}): largest relative difference "
    f"{worst_phi:.2g}; accumulators a_t: {worst_a:.2g}. The two forms give "
    "the same iterates to float64 rounding; the implemented one only stores "
    "the look-ahead point instead of θ."
)

# %% [markdown]
# ## The answer
#
# Every rule reaches the minimum of the ill-conditioned quadratic; Adagrad's 9 steps
# (against plain GD's 248) come from the quadratic's axes being the coordinate axes:
# turned by 45°, GD and Momentum take exactly the same steps and Adagrad needs 319.
# Momentum's usual β = 0.9 is far from best there: tuned per β, the fewest steps (36)
# are at β = 0.6, beside Polyak's closed form β* = ((√κ − 1)/(√κ + 1))² = 0.566,
# against 158 at β = 0.9. On Rosenbrock only Momentum gets to 1e-6 in 500 steps.
# Nesterov swings less past the minimum than Momentum (0.48 against 0.61 at β = 0.9),
# and the notes' look-ahead form gives the implemented iterates to 1e-13.
#
# Each rule at the best of seven learning rates, 500 steps: on the (axis-aligned)
# quadratic of condition number 50 Adagrad reaches $f - f^* < 10^{-6}$ in 9 steps,
# Nesterov in 129, Momentum in 162, plain GD in 248; on Rosenbrock only Momentum gets
# there (394 steps); RMSprop at a constant η never settles to 1e-6 anywhere, and
# Adadelta at its "no learning rate" η of 1–3 is the slowest rule on three of the four
# functions. Nesterov swings less past the minimum than Momentum at the same η and β
# (0.48 against 0.61 at β = 0.9) and converges sooner at β = 0.9 and 0.95, but later
# at β = 0.8. The notes' look-ahead form and the implemented one give the same
# iterates: largest relative difference 1.1e-13 in the weights and 2.6e-13 in the
# accumulator over all bounded runs.
#
# The momentum sweep: heavy-ball momentum on the quadratic (κ = 50) at β = 0, 0.05,
# …, 0.99, each with the best of 201 log-spaced η. Measured: 201 steps at β = 0, 56 at
# 0.5, 39 at β* itself, 36 at 0.6, 75 at 0.8, 158 at 0.9 and 325 at 0.95, each within
# a few steps of $\log(f_0/10^{-6})/(-2 \log \text{rate})$ at that β's best η (at η*
# exactly the two roots coincide and the error decays as $t \cdot \text{rate}^t$, so
# the fastest rate is not quite the fewest steps to a fixed tolerance). The rotated
# quadratic (the same function turned by 45°, started from the turned start): GD 248
# and 248 steps, Momentum 162 and 162, Adagrad 9 and 319, Adam 158 and 165; RMSprop
# reaches 1e-6 on neither.
#
# ### References
#
# - Polyak, "Some methods of speeding up the convergence of iteration methods", 1964
#   (the optimal η and β of the heavy ball on a quadratic).
# - Nesterov, "A method of solving a convex programming problem with convergence rate
#   O(1/k²)", 1983; Sutskever, Martens, Dahl, Hinton, "On the importance of
#   initialization and momentum in deep learning", ICML 2013.
# - Duchi, Hazan, Singer 2011 (Adagrad); Zeiler 2012 (Adadelta); Tieleman & Hinton
#   2012 (RMSprop); Kingma & Ba 2015 (Adam).
# - Rosenbrock, "An automatic method for finding the greatest or least value of a
#   function", 1960; Beale, "On an iterative method for finding a local minimum of a
#   function of more than one variable", 1958.

# %%
write_json(
    out / "02_optimizer_paths.json",
    {
        "runs": [
            {"rule": rule, "learning_rate": rate, "path": path}
            for (rule, rate), path in runs.items()
        ],
        "chosen": chosen,
        "overshoots": overshoots,
        "nesterov": [
            {"learning_rate": rate, "weights": phi, "accumulators": a}
            for rate, (phi, a) in nesterov.items()
        ],
        "steps": steps,
        "sweep": sweep,
        "seeds": seeds,
    },
)
print(run_description(time.perf_counter() - started))
