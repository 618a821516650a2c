"""ngrok_jax: NeuralGrok (a learned gradient amplifier trained by a bilevel
update) in JAX, with the baselines, a multi-seed runner and optax transforms.

The names below are the package's own; the other public names live in its
facade modules (``ngrok_jax.runner``, ``ngrok_jax.results``, ...;
docs/layout.md).
"""
from ngrok_jax._src.optim.amplifier import (Amplifier, RichAmplifier, amplify,
                                            pwl_table, safe_normalize)
from ngrok_jax._src.optim.amp_features import adam_moments, rich_features
from ngrok_jax._src.core.metrics import (absolute_entropy, fourier_spectrum,
                                         global_norm, key_frequencies,
                                         steps_to_threshold, summarize_steps)
from ngrok_jax._src.core.model import (Transformer, accuracy, cross_entropy,
                                       log_stablemax, softmax_collapse,
                                       stablemax_cross_entropy)
from ngrok_jax._src.optim.neuralgrok import (NeuralGrokState, amplifier_params,
                                             is_meta_step, neuralgrok)
from ngrok_jax._src.core.tasks import (TASKS, Task, make_split, make_splits,
                                       make_task)
from ngrok_jax._src.training.config import (HPARAMS, METHODS, TrainConfig,
                                            check_hparam)
from ngrok_jax._src.training.train import Data, SeedState, TrainState
from ngrok_jax._src.training.trainer import Trainer
from ngrok_jax._src.optim.transforms import (GrokfastEmaState, GrokfastMaState,
                                             NormalizeGradientsState,
                                             OrthogonalizeGradientsState,
                                             ProjectWeightNormState,
                                             ScaleByAmplifierState,
                                             grokfast_ema, grokfast_ma,
                                             normalize_gradients,
                                             orthogonalize_gradients,
                                             project_weight_norm,
                                             scale_by_amplifier)
from ngrok_jax._src.optim.optimizers import coupled_adam, clip_by_global_norm
from ngrok_jax._src.optim.learned_rule import (LearnedRuleState, RuleConfig,
                                               frozen_rule, init_rule,
                                               load_rule, rule_update,
                                               save_rule)
from ngrok_jax._src.optim.pretrained import pretrained_rule
from ngrok_jax._src.optim.egd import polar_factor, scale_by_egd
from ngrok_jax._src.optim.user_method import register_method

__all__ = [
    "Amplifier", "RichAmplifier", "adam_moments", "amplify", "pwl_table",
    "rich_features", "safe_normalize", "absolute_entropy", "fourier_spectrum",
    "global_norm", "key_frequencies", "steps_to_threshold", "summarize_steps",
    "Transformer", "accuracy", "cross_entropy", "log_stablemax",
    "softmax_collapse", "stablemax_cross_entropy", "NeuralGrokState",
    "amplifier_params", "is_meta_step", "neuralgrok", "TASKS", "Task",
    "make_split", "make_splits", "make_task", "HPARAMS", "METHODS", "Data",
    "SeedState", "TrainConfig", "TrainState", "check_hparam", "Trainer",
    "GrokfastEmaState", "GrokfastMaState", "NormalizeGradientsState",
    "OrthogonalizeGradientsState", "ProjectWeightNormState",
    "ScaleByAmplifierState", "coupled_adam", "grokfast_ema", "grokfast_ma",
    "normalize_gradients", "orthogonalize_gradients", "project_weight_norm",
    "scale_by_amplifier", "LearnedRuleState", "RuleConfig", "frozen_rule",
    "init_rule", "load_rule", "rule_update", "save_rule", "pretrained_rule",
    "clip_by_global_norm", "polar_factor", "scale_by_egd", "register_method",
]

__version__ = "0.2.0"
