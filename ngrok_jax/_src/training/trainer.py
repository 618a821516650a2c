"""The :class:`Trainer` facade: the functional core of
:mod:`ngrok_jax.train` bound to one validated config::

    trainer = Trainer(TrainConfig(task="a+b", p=23, method="neuralgrok"))
    state, data = trainer.init(seeds=[0, 1, 2, 3])
    state, losses = trainer.train_steps(state, data, 300)   # lax.scan
    metrics = trainer.evaluate(state, data)                 # dict of (S,)
"""
from __future__ import annotations

from typing import Sequence

from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.training.methods import (amplifier_of, hparams_of, loss_fn,
                                             model_of, optimizer, task_of,
                                             transform_gradient)
from ngrok_jax._src.training.seed_step import batch_of, batch_step
from ngrok_jax._src.core.sharding import resolve_seed_group
from ngrok_jax._src.training.train import (Data, SeedState, TrainState,
                                           evaluate, init, init_amplifier,
                                           programs, seed_state, train_steps)

__all__ = ["Trainer"]


class Trainer:
  """The functions of :mod:`ngrok_jax.train` bound to one validated
  :class:`TrainConfig`.

  ``seed_group``: see :func:`train_steps` (``None``: every seed vmapped;
  ``"auto"``: :func:`resolve_seed_group`).
  """

  def __init__(self, config: TrainConfig, seed_group=None):
    self.config = config.validate()
    self.seed_group = resolve_seed_group(seed_group)
    self.task = task_of(self.config)
    self.model = model_of(self.config)
    self.amplifier = amplifier_of(self.config)
    self.uses_amplifier = self.config.record.uses_amplifier
    self.has_meta = self.config.record.learns_amplifier

  def init(self, seeds: Sequence[int], hparams=None, amp_params=None,
           amp_per_seed: bool = False):
    """Initial state and data: :func:`init` with this config.

    Args:
      seeds: distinct integer seeds, one per vmapped run.
      hparams: optional ``{name: value or per-seed values}`` overrides.
      amp_params: amplifier parameters to start from, shared by all seeds
        (or one per seed with ``amp_per_seed``).
      amp_per_seed: ``amp_params`` has a leading seed axis.

    Returns:
      ``(state, data)``, as :func:`init`.
    """
    return init(self.config, seeds, hparams, amp_params, amp_per_seed)

  def train_steps(self, state: TrainState, data: Data, num_steps: int):
    """``num_steps`` steps of every seed: :func:`train_steps`.

    Args:
      state: the current state (donated: continue from the returned one).
      data: the data from :meth:`init`.
      num_steps: the number of steps, one ``lax.scan``.

    Returns:
      ``(state, out)``, as :func:`train_steps`.
    """
    return train_steps(self.config, state, data, num_steps=num_steps,
                       seed_group=self.seed_group)

  def compile(self, state: TrainState, data: Data, num_steps: int) -> None:
    """Compiles :meth:`train_steps` for ``num_steps`` and :meth:`evaluate`
    ahead of time (the later calls with arguments of the same shapes and
    placement reuse the programs), so that the compilation can be timed
    apart from the training.

    Args:
      state: a state (not donated here).
      data: the data from :meth:`init`.
      num_steps: the chunk size :meth:`train_steps` will be called with.
    """
    progs = programs(self.config)
    progs.train_steps.lower(state, data, num_steps=num_steps,
                            seed_group=self.seed_group).compile()
    progs.evaluate.lower(state, data).compile()

  def evaluate(self, state: TrainState, data: Data):
    """Metrics of every seed: :func:`evaluate`.

    Args:
      state: the current state.
      data: the data from :meth:`init`.

    Returns:
      A flat dict of (S,) arrays, as :func:`evaluate`.
    """
    return evaluate(self.config, state, data)

  def loss_fn(self, params, x, y, w=None):
    """The configured loss of one seed's parameters on a batch.

    Args:
      params: the transformer's parameters (no seed axis).
      x: (B, L) tokens.
      y: (B,) labels.
      w: optional (B,) 0/1 row mask.

    Returns:
      A scalar loss.
    """
    return loss_fn(self.config, params, x, y, w)

  def optimizer(self, hp, amp_init=None):
    """The method's optax transformation for one seed.

    Args:
      hp: the seed's numeric hyperparameters (``{name: scalar}``).
      amp_init: the amplifier parameters to start from (NeuralGrok).

    Returns:
      An ``optax.GradientTransformation``.
    """
    return optimizer(self.config, hp, amp_init)

  def transform_gradient(self, s: SeedState, g):
    """The method's gradient transformation applied to ``g``.

    Args:
      s: one seed's state (no seed axis).
      g: a gradient of the transformer's parameters.

    Returns:
      The transformed gradient (what the inner optimizer receives).
    """
    return transform_gradient(self.config, s, g)

  def default_hparams(self, num_seeds: int, overrides=None):
    """The per-seed numeric hyperparameters of this config.

    Args:
      num_seeds: S.
      overrides: optional ``{name: value or per-seed values}``.

    Returns:
      ``{name: (S,) array}`` for every name of ``HPARAMS``.
    """
    return hparams_of(self.config, num_seeds, overrides)

  def init_amplifier(self, seed: int = 0):
    """Freshly initialised amplifier parameters.

    Args:
      seed: the initialisation seed.

    Returns:
      The amplifier's parameter pytree.
    """
    return init_amplifier(self.config, seed)

  def seed_state(self, params, amp_params=None, key=None, hparams=None):
    """One seed's fresh state around given weights: :func:`seed_state`.

    Args:
      params: the transformer's parameters (no seed axis).
      amp_params: the amplifier parameters (NeuralGrok).
      key: the seed's PRNG key.
      hparams: overrides of the numeric hyperparameters (scalars).

    Returns:
      A :class:`SeedState`.
    """
    return seed_state(self.config, params, amp_params, key, hparams)

  def batch_of(self, key, train_idx, step, data: Data):
    """The minibatch one seed trains on at ``step``, as the training steps
    draw it (this config's ``batch_size`` and ``batching``).

    Args:
      key: the seed's batch PRNG key (``SeedState.key``).
      train_idx: the seed's (n_train,) training indices (a row of
        ``data.train``).
      step: the 0-indexed step number.
      data: the data from :meth:`init`.

    Returns:
      ``(x, y, w)``: (B, L) tokens, (B,) labels, (B,) 0/1 row mask (0 for
      the padding rows of a short last batch of an epoch).
    """
    return batch_of(self.config, key, train_idx, step, data)

  def batch_step(self, s: SeedState, x, y, w, outer_x, outer_y, step):
    """One training step of one seed: :func:`batch_step`.

    Args:
      s: the seed's state (no seed axis).
      x: (B, L) tokens.
      y: (B,) labels.
      w: (B,) 0/1 row mask, or None.
      outer_x: the outer split's tokens.
      outer_y: the outer split's labels.
      step: the 0-indexed step number.

    Returns:
      ``(state, dict(loss, outer_loss))``.
    """
    return batch_step(self.config, s, x, y, w, outer_x, outer_y, step)
