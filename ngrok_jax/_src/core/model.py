"""The reference decoder-only transformer, as a Flax module.

Block (reference quirk, kept so that training dynamics match)::

    x = LN1(x); x = x + CausalSelfAttn(x); x = x + MLP(LN2(x))

followed by a final LayerNorm and a bias-free linear head; the logits of the
last position predict the answer.

Initialisation (``init_style``; ``TrainConfig.init``):

* ``"torch"`` (default): PyTorch's defaults, as the authors' reference code
  (NeuralOptGrok a7490be, ``src/model.py``) gets them: token and position
  embeddings N(0, 1); every linear kernel and bias U(-1/sqrt(fan_in),
  1/sqrt(fan_in)); the attention in-projection (q, k, v together, a (3d, d)
  matrix in PyTorch) Xavier-uniform, U(+-sqrt(6 / (d + 3d))), with zero bias;
  the attention out-projection kernel as a linear layer and zero bias;
  LayerNorm scale 1, bias 0.  The initialisation scale decides when (and
  whether) grokking happens, so this is part of the reproduction.
* ``"flax"``: embeddings N(0, 0.02), LeCun-normal kernels, zero biases (this
  library's behaviour before it followed the reference).

The reference's position table has one more row than the model reads (its
``seq_len`` counts the answer token); that row never receives a gradient and
never changes an output, so it is left out here.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = ["Transformer", "cross_entropy", "stablemax_cross_entropy",
           "log_stablemax", "softmax_collapse", "accuracy", "INITS"]

#: Values of ``Transformer.init_style`` (and ``TrainConfig.init``).
INITS = ("torch", "flax")


def torch_uniform(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's ``nn.Linear`` default for
  both the weight (kaiming-uniform with a = sqrt(5)) and the bias."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _dense(features: int, fan_in: int, init: str, name: str,
           use_bias: bool = True, kernel_init=None, bias_init=None):
  """``nn.Dense`` with the initialisers of ``init`` (see the module doc)."""
  if init == "flax":
    return nn.Dense(features, use_bias=use_bias, name=name)
  return nn.Dense(features, use_bias=use_bias, name=name,
                  kernel_init=kernel_init or torch_uniform(fan_in),
                  bias_init=bias_init or torch_uniform(fan_in))


class CausalSelfAttention(nn.Module):
  dim: int
  heads: int
  init_style: str = "torch"

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    hd = self.dim // self.heads
    zeros = nn.initializers.zeros
    # PyTorch MultiheadAttention: in_proj_weight (3d, d) Xavier-uniform over
    # the whole matrix, i.e. bound sqrt(6 / (d + 3d)); both biases zero.
    xavier = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
    qkv = _dense(3 * self.dim, self.dim, self.init_style, "qkv",
                 kernel_init=xavier, bias_init=zeros)(x)
    q, k, v = jnp.split(qkv, 3, axis=-1)
    q, k, v = (z.reshape(b, t, self.heads, hd) for z in (q, k, v))
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hd).astype(x.dtype)
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    att = jnp.where(mask, att, jnp.finfo(att.dtype).min)
    att = jax.nn.softmax(att, axis=-1)
    y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, d)
    return _dense(self.dim, self.dim, self.init_style, "proj", bias_init=zeros)(y)


class Block(nn.Module):
  dim: int
  heads: int
  init_style: str = "torch"

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(epsilon=1e-5, name="ln1")(x)
    x = x + CausalSelfAttention(self.dim, self.heads, self.init_style,
                                name="attn")(x)
    h = nn.LayerNorm(epsilon=1e-5, name="ln2")(x)
    h = _dense(4 * self.dim, self.dim, self.init_style, "fc")(h)
    h = nn.gelu(h, approximate=False)
    h = _dense(self.dim, 4 * self.dim, self.init_style, "out")(h)
    return x + h


class Transformer(nn.Module):
  """Decoder-only transformer returning the logits at the last position.

  Attributes:
    vocab_size: number of tokens (and of output classes).
    seq_len: maximum sequence length (size of the position embedding).
    dim: model width.
    heads: attention heads (must divide ``dim``).
    depth: number of blocks.
    init_style: ``"torch"`` (PyTorch's defaults, as the reference; default) or
      ``"flax"`` (see the module docstring).
  """
  vocab_size: int
  seq_len: int
  dim: int = 128
  heads: int = 4
  depth: int = 2
  init_style: str = "torch"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens: (B, L) int -> logits (B, vocab_size) at the last position."""
    if self.dim % self.heads:
      raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
    if self.init_style not in INITS:
      raise ValueError(f"unknown init {self.init_style!r}; valid: "
                       f"{', '.join(INITS)}")
    _, t = tokens.shape
    emb = nn.initializers.normal(0.02 if self.init_style == "flax" else 1.0)
    tok = nn.Embed(self.vocab_size, self.dim, embedding_init=emb,
                   name="tok_emb")(tokens)
    pos = self.param("pos_emb", emb, (self.seq_len, self.dim))
    x = tok + pos[None, :t]
    for i in range(self.depth):
      x = Block(self.dim, self.heads, self.init_style, name=f"block_{i}")(x)
    x = nn.LayerNorm(epsilon=1e-5, name="ln_f")(x)
    return _dense(self.vocab_size, self.dim, self.init_style, "head",
                  use_bias=False)(x[:, -1])


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  weights: Optional[jax.Array] = None) -> jax.Array:
  """Mean softmax cross-entropy with integer labels.

  ``weights`` (0/1 per row) masks padding rows: the mean is then over the
  rows with weight 1 (a short last batch of an epoch, padded to a fixed
  shape, gives the loss of the short batch).

  Args:
    logits: (n, classes) logits.
    labels: (n,) integer labels.
    weights: optional (n,) 0/1 row weights.

  Returns:
    A scalar: the mean loss over the rows of weight 1 (all rows without
    ``weights``).
  """
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return ce.mean()
  w = weights.astype(ce.dtype)
  return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1)


def log_stablemax(logits: jax.Array, axis: int = -1) -> jax.Array:
  r"""Log of StableMax (Prieto et al. 2025), a softmax without exponentials:

  .. math::
      s(x) = \begin{cases} x + 1 & x \ge 0 \\ 1 / (1 - x) & x < 0
      \end{cases}, \qquad
      \mathrm{StableMax}(x)_i = \frac{s(x_i)}{\sum_j s(x_j)} .

  Computed in the log domain: :math:`\log s(x) = \mathrm{log1p}(x)` for
  :math:`x \ge 0` and :math:`-\mathrm{log1p}(-x)` for :math:`x < 0`, then
  ``log_softmax`` of those (the normaliser by log-sum-exp), so no sum
  overflows and no probability underflows to an exact 0 or 1.

  Args:
    logits: an array of logits.
    axis: the class axis.

  Returns:
    The log-probabilities, of ``logits``' shape.
  """
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  # each branch sees only its own half (no NaN/inf in the unused branch)
  pos = jnp.log1p(jnp.maximum(logits, 0.0))
  neg = -jnp.log1p(jnp.maximum(-logits, 0.0))
  log_s = jnp.where(logits >= 0, pos, neg)
  return jax.nn.log_softmax(log_s, axis=axis)


def stablemax_cross_entropy(logits: jax.Array, labels: jax.Array,
                            weights: Optional[jax.Array] = None) -> jax.Array:
  r"""Mean StableMax cross-entropy with integer labels (``weights`` as in
  :func:`cross_entropy`): :math:`-\log \mathrm{StableMax}(x)_y`.

  Args:
    logits: (n, classes) logits.
    labels: (n,) integer labels.
    weights: optional (n,) 0/1 row weights.

  Returns:
    A scalar: the mean loss over the rows of weight 1.
  """
  lp = log_stablemax(logits)
  ce = -jnp.take_along_axis(lp, labels[..., None], axis=-1)[..., 0]
  if weights is None:
    return ce.mean()
  w = weights.astype(ce.dtype)
  return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1)


def softmax_collapse(logits: jax.Array, loss: str = "softmax") -> jax.Array:
  """Fraction of rows whose probabilities are an exact one-hot in float32
  (Prieto et al.'s "softmax collapse": the largest probability rounds to
  1, so the gradient of the cross-entropy through those rows vanishes).
  ``loss="stablemax"``: the same test of the StableMax probabilities.

  Args:
    logits: (n, classes) logits.
    loss: ``"softmax"`` or ``"stablemax"``: whose probabilities to test.

  Returns:
    A float32 scalar in [0, 1].
  """
  logits = logits.astype(jnp.float32)
  probs = (jnp.exp(log_stablemax(logits)) if loss == "stablemax"
           else jax.nn.softmax(logits, axis=-1))
  return jnp.mean(jnp.max(probs, axis=-1) == 1.0)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of rows whose arg-max logit equals the integer label.

  Args:
    logits: (..., classes) logits.
    labels: integer labels of the leading shape.

  Returns:
    A scalar in [0, 1].
  """
  return (jnp.argmax(logits, -1) == labels).mean()
