"""ngrok_jax: NeuralGrok (a learned gradient amplifier trained by a bilevel
update) in JAX, with the baselines, a multi-seed runner and optax transforms.
"""
from ngrok_jax.amplifier import (Amplifier, RichAmplifier, adam_moments,
                                 amplify, pwl_table, rich_features,
                                 safe_normalize)
from ngrok_jax.metrics import (absolute_entropy, fourier_spectrum,
                               global_norm, key_frequencies,
                               steps_to_threshold, summarize_steps)
from ngrok_jax.model import (Transformer, accuracy, cross_entropy,
                             log_stablemax, softmax_collapse,
                             stablemax_cross_entropy)
from ngrok_jax.neuralgrok import (NeuralGrokState, amplifier_params,
                                  is_meta_step, neuralgrok)
from ngrok_jax.tasks import TASKS, Task, make_split, make_splits, make_task
from ngrok_jax.train import (HPARAMS, METHODS, Data, SeedState, TrainConfig,
                             TrainState, check_hparam)
from ngrok_jax.trainer import Trainer
from ngrok_jax.transforms import (GrokfastEmaState, GrokfastMaState,
                                  NormalizeGradientsState,
                                  OrthogonalizeGradientsState,
                                  ProjectWeightNormState,
                                  ScaleByAmplifierState, coupled_adam,
                                  grokfast_ema, grokfast_ma,
                                  normalize_gradients,
                                  orthogonalize_gradients,
                                  project_weight_norm, scale_by_amplifier)

__all__ = [
    "Amplifier", "amplify", "pwl_table", "safe_normalize",
    "RichAmplifier", "rich_features", "adam_moments",
    "absolute_entropy", "fourier_spectrum", "global_norm", "key_frequencies",
    "steps_to_threshold", "summarize_steps",
    "Transformer", "accuracy", "cross_entropy", "log_stablemax",
    "softmax_collapse", "stablemax_cross_entropy",
    "NeuralGrokState", "amplifier_params", "is_meta_step", "neuralgrok",
    "TASKS", "Task", "make_split", "make_splits", "make_task",
    "HPARAMS", "METHODS", "Data", "SeedState", "TrainConfig", "Trainer",
    "TrainState", "check_hparam",
    "GrokfastEmaState", "GrokfastMaState", "NormalizeGradientsState",
    "ScaleByAmplifierState", "coupled_adam", "grokfast_ema", "grokfast_ma",
    "normalize_gradients", "scale_by_amplifier",
    "OrthogonalizeGradientsState", "orthogonalize_gradients",
    "ProjectWeightNormState", "project_weight_norm",
]

# A learned update rule (acts on the update) and its outer trainer
# (ngrok_jax.pes: PES / truncated backprop; ngrok_jax.rule_tasks).
from ngrok_jax.learned_rule import (LearnedRuleState, RuleConfig,  # noqa: E402
                                    frozen_rule, init_rule, load_rule,
                                    rule_update, save_rule)
from ngrok_jax.pretrained import pretrained_rule  # noqa: E402
__all__ += ["LearnedRuleState", "RuleConfig", "frozen_rule", "init_rule",
            "load_rule", "rule_update", "save_rule", "pretrained_rule"]

__version__ = "0.1.0"
