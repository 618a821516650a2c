"""The reference decoder-only transformer, as a Flax module.

Block (reference quirk, kept so that training dynamics match)::

    x = LN1(x); x = x + CausalSelfAttn(x); x = x + MLP(LN2(x))

followed by a final LayerNorm and a bias-free linear head; the logits of the
last position predict the answer.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = ["Transformer", "cross_entropy", "accuracy"]


class CausalSelfAttention(nn.Module):
  dim: int
  heads: int

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    hd = self.dim // self.heads
    qkv = nn.Dense(3 * self.dim, name="qkv")(x)
    q, k, v = jnp.split(qkv, 3, axis=-1)
    q, k, v = (z.reshape(b, t, self.heads, hd) for z in (q, k, v))
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hd).astype(x.dtype)
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    att = jnp.where(mask, att, jnp.finfo(att.dtype).min)
    att = jax.nn.softmax(att, axis=-1)
    y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, d)
    return nn.Dense(self.dim, name="proj")(y)


class Block(nn.Module):
  dim: int
  heads: int

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(epsilon=1e-5, name="ln1")(x)
    x = x + CausalSelfAttention(self.dim, self.heads, name="attn")(x)
    h = nn.LayerNorm(epsilon=1e-5, name="ln2")(x)
    h = nn.Dense(4 * self.dim, name="fc")(h)
    h = nn.gelu(h, approximate=False)
    h = nn.Dense(self.dim, name="out")(h)
    return x + h


class Transformer(nn.Module):
  """Decoder-only transformer returning the logits at the last position.

  Attributes:
    vocab_size: number of tokens (and of output classes).
    seq_len: maximum sequence length (size of the position embedding).
    dim: model width.
    heads: attention heads (must divide ``dim``).
    depth: number of blocks.
  """
  vocab_size: int
  seq_len: int
  dim: int = 128
  heads: int = 4
  depth: int = 2

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens: (B, L) int -> logits (B, vocab_size) at the last position."""
    if self.dim % self.heads:
      raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
    _, t = tokens.shape
    init = nn.initializers.normal(0.02)
    tok = nn.Embed(self.vocab_size, self.dim, embedding_init=init,
                   name="tok_emb")(tokens)
    pos = self.param("pos_emb", init, (self.seq_len, self.dim))
    x = tok + pos[None, :t]
    for i in range(self.depth):
      x = Block(self.dim, self.heads, name=f"block_{i}")(x)
    x = nn.LayerNorm(epsilon=1e-5, name="ln_f")(x)
    return nn.Dense(self.vocab_size, use_bias=False, name="head")(x[:, -1])


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of rows whose arg-max logit equals the integer label."""
  return (jnp.argmax(logits, -1) == labels).mean()
