"""How far NeuralGrok's amplifier has learned: the ``amp/*`` and ``meta/*``
metrics of the evaluation (:func:`amplifier_learning`, called per seed
inside the jitted :func:`ngrok_jax.train.evaluate`)."""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp

from ngrok_jax._src.optim.amplifier import amplify
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.training.methods import amplify_at, transform_gradient
from ngrok_jax._src.core.metrics import global_norm

__all__ = ["amplifier_learning"]


def _rel_dist(a, b):
  """``||a - b|| / ||b||`` over whole pytrees (0 where ``b`` is 0)."""
  diff = global_norm(jax.tree.map(jnp.subtract, a, b))
  ref = global_norm(b)
  return diff / jnp.where(ref > 0, ref, 1)


def amplifier_learning(cfg: TrainConfig, s, g, gt=None
                       ) -> Dict[str, jax.Array]:
  r"""How far NeuralGrok's amplifier has learned, on the gradient ``g``
  (the evaluation's full-train-split gradient) at the seed state ``s``
  (a :class:`ngrok_jax.SeedState` of method ``neuralgrok``).

  With :math:`G(g;\phi)` the amplified gradient (``gt``, recomputed if
  ``None``), :math:`\phi_0` the amplifier the seed started from and
  :math:`R(g) = c\,g_t/\lVert g_t \rVert` per tensor :math:`t` (plain
  rescaling: the amplifier with a constant score function):

  * ``amp/dist_init`` :math:`= \lVert G(g;\phi) - G(g;\phi_0)\rVert /
    \lVert G(g;\phi_0)\rVert`;
  * ``amp/dist_const`` :math:`= \lVert G(g;\phi) - R(g)\rVert /
    \lVert R(g)\rVert`.

  Global L2 norms over all tensors.  Every tensor of :math:`G` and
  :math:`R` has norm :math:`c`, so with :math:`\cos_t` the cosine between
  the two tensors, the distance is :math:`\sqrt{\mathrm{mean}_t\,
  2(1-\cos_t)}` (0: the same update direction in every tensor; at most 2).
  ``amp/param_change`` :math:`= \lVert\phi - \phi_0\rVert/\lVert\phi_0
  \rVert` (parameter space).  From the state's last meta step:
  ``meta/outer_before`` and ``meta/outer_after`` (its objective before and
  after its update of :math:`\phi`, same look-ahead start),
  ``meta/improvement`` = before - after (> 0: the step lowered the outer
  loss), ``meta/grad_norm`` (its meta-gradient's norm).  Cost: two more
  evaluations of the amplifier on one gradient.

  Args:
    cfg: the configuration (method ``neuralgrok``).
    s: the seed's state (no seed axis).
    g: the gradient to measure on.
    gt: the amplified ``g`` if already computed.

  Returns:
    ``{name: scalar}`` for the seven names above.
  """
  st = s.opt_state
  c = s.hparams["c"]
  if gt is None:
    gt = transform_gradient(cfg, s, g)
  g0 = amplify_at(cfg, c, st.amplifier_init, g, st.inner_state, s.params)
  rescaled = amplify(g, jnp.zeros_like, c)
  return {"amp/dist_init": _rel_dist(gt, g0),
          "amp/dist_const": _rel_dist(gt, rescaled),
          "amp/param_change": _rel_dist(st.amplifier_params,
                                        st.amplifier_init),
          "meta/outer_before": st.outer_loss,
          "meta/outer_after": st.outer_loss_after,
          "meta/improvement": st.outer_loss - st.outer_loss_after,
          "meta/grad_norm": st.meta_grad_norm}
