"""The notes' comparisons and ablations as library functions.

Each module runs one experiment and returns a frozen result dataclass with its
settings, its summary rows and its per-epoch curves; nothing here prints, parses
arguments or writes files (the `keras-optnotes` commands and the tutorials do that).
Importing this package does not import TensorFlow; running an experiment does so
only on the TensorFlow backend.

- `keras_optnotes.experiments.compare`: `rank_rules`, the update rules each tuned on
  validation and measured over seeds → `Ranking` (means with 95 % intervals, paired
  differences); `run_comparison`, one seed's loss curves → `Comparison` of
  `OptimizerRun`.
- `keras_optnotes.experiments.regularize`: `run_ablation`, no regularization and each
  regularizer alone → `Ablation` of `TechniqueRun`, with both generalization gaps.
- `keras_optnotes.experiments.sharpness`: `run_sharpness_study`, small- against
  large-batch minima and the large batch under SAM, ASAM, LARS, SWA and Lookahead,
  each tuned on validation, over seeds → `SharpnessStudy`; `compare_batch_sizes`,
  one seed at fixed settings → `BatchSizeComparison` of `SolutionRun`.
- `keras_optnotes.experiments.critical_batch`: `run_critical_batch`, steps to a target
  loss against the batch size, the fitted critical batch size and the gradient noise
  scale → `CriticalBatchExperiment`.
- `keras_optnotes.experiments.protocol`: the evidence protocol the experiments share
  (splits, grids, seeds, intervals, budgets), written once.
- `keras_optnotes.experiments.summary`: what the tutorials report over seeds
  (`spread`, `estimate`, paired `difference`, `wilson_interval`), `descend` on a 2-D
  test function and `run_description`.
"""

from keras_optnotes.experiments.compare import (
    Comparison,
    OptimizerRun,
    Ranking,
    rank_rules,
    run_comparison,
)
from keras_optnotes.experiments.regularize import (
    Ablation,
    TechniqueRun,
    run_ablation,
)
from keras_optnotes.experiments.sharpness import (
    BatchSizeComparison,
    SharpnessStudy,
    SolutionRun,
    compare_batch_sizes,
    run_sharpness_study,
)
from keras_optnotes.experiments.summary import (
    Estimate,
    Spread,
    descend,
    difference,
    estimate,
    run_description,
    significant_difference,
    spread,
    wilson_interval,
)

__all__ = [
    "Ablation",
    "BatchSizeComparison",
    "Comparison",
    "OptimizerRun",
    "Ranking",
    "SharpnessStudy",
    "SolutionRun",
    "TechniqueRun",
    "Estimate",
    "Spread",
    "compare_batch_sizes",
    "descend",
    "difference",
    "estimate",
    "rank_rules",
    "run_ablation",
    "run_comparison",
    "run_description",
    "run_sharpness_study",
    "significant_difference",
    "spread",
    "wilson_interval",
]
