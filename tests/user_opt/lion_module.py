"""A user's own optimizer, outside the package: Lion (Chen et al. 2023,
``optax.lion``) with its decoupled weight decay, for
``ngrok-jax train --methods tests.user_opt.lion_module:lion`` and
``experiments.tune`` (tests/test_user_method.py)."""
import optax


def lion(learning_rate, weight_decay, b1=0.9, b2=0.99):
  """Lion (sign of the interpolated momentum), decoupled weight decay."""
  return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


#: Lion's updates have RMS 1, Adam's early ones about 1 too, but Lion is
#: usually run at 3-10x smaller learning rates with 3-10x larger decay.
lion.grid = {"lr": (3e-4, 1e-3), "wd": (0.1, 1.0)}


def not_a_transformation(learning_rate, weight_decay):
  """Breaks the contract: returns a number."""
  return learning_rate


NOT_CALLABLE = 3
