"""The NeuralGrok amplifier: a scalar-to-scalar ReLU MLP and its reweighting.

``Amplifier(hidden=(128, 128))`` maps every gradient component ``g_i`` to a
score ``f(g_i; phi)``.  :func:`amplify` turns scores into per-tensor weights::

    s = softmax(f(g))            (over the entries of one parameter tensor)
    g' = c * (s * g) / ||s * g||

Two exact ways of evaluating ``f`` on a vector of components are provided:

* ``method="dense"``: the MLP itself, ``O(n * H1 * H2)`` work and memory.
* ``method="pwl"`` (default): ``f`` is continuous and piecewise linear in its
  scalar input.  Its breakpoints are found from ``phi`` (layer by layer: each
  hidden unit's pre-activation is affine on every interval of the previous
  layer, so it crosses zero at most once there), giving a sorted table of at
  most ``prod(H_l + 1)`` intervals with a slope and an intercept each; every
  component is then evaluated by a binary search and one multiply-add.  The
  table is a differentiable function of ``phi`` (breakpoint positions carry no
  gradient: ``f`` is continuous, so moving a breakpoint does not change the
  value at a fixed input), so meta-gradients are exact as well.  It agrees
  with ``"dense"`` to float rounding (tests check it).

:class:`RichAmplifier` is the option ``amp_inputs="rich"``: an
MLP ``F -> hidden... -> 1`` that sees, per component, the features of
:func:`rich_features` (the gradient component, the inner Adam's first and
second moment, the parameter value, each divided by its tensor's RMS) plus a
learned per-tensor embedding added to its first layer.  It has no
piecewise-linear table (that needs a scalar input): it is evaluated densely.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# defined in amp_features; documented here too (the amplifier's API page)
from ngrok_jax._src.optim.amp_features import adam_moments, rich_features

__all__ = ["Amplifier", "RichAmplifier", "amplify", "safe_normalize",
           "pwl_table", "rich_features", "adam_moments", "RICH_FEATURES"]

#: The per-component inputs of :class:`RichAmplifier`, in column order.
RICH_FEATURES = ("grad", "adam_mu", "adam_sqrt_nu", "param")


def _torch_uniform(fan_in: int):
  """PyTorch ``nn.Linear``'s default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _mlp_dense(layers, x, emb=None, ids=None):
  """Direct evaluation; ``x`` has shape (n,) (one input) or (n, F).

  ``emb`` (num_tensors, H1) and ``ids`` (n,): a learned per-tensor vector
  added to the first layer's pre-activation of each component.
  """
  (w, b), rest = layers[0], layers[1:]
  if x.ndim == 1:
    h = x[:, None] * w[0][None, :] + b[None, :]
  else:
    h = x @ w + b[None, :]
  if emb is not None:
    h = h + emb[ids]
  for w, b in rest:
    h = jax.nn.relu(h)
    h = h @ w + b
  return h[:, 0]


def _mlp_dense_chunked(layers, x, chunk: int, emb=None, ids=None):
  """``_mlp_dense`` over blocks of ``chunk`` components, rematerialised.

  ``lax.map`` walks the blocks one at a time and ``jax.checkpoint`` keeps
  only each block's input for the backward pass, so the activation memory is
  ``O(chunk * width)`` instead of ``O(n * width)``; values and gradients are
  those of ``_mlp_dense`` (same operations per component; the parameter
  gradient sums the blocks in a different order, i.e. float rounding only).
  """
  n = x.shape[0]
  if n <= chunk:
    return _mlp_dense(layers, x, emb, ids)
  num = -(-n // chunk)
  pad = lambda a: jnp.pad(a, [(0, num * chunk - n)] + [(0, 0)] * (
      a.ndim - 1)).reshape((num, chunk) + a.shape[1:])
  ids = jnp.zeros((n,), jnp.int32) if ids is None else ids
  body = jax.checkpoint(lambda lay, e, xc, ic: _mlp_dense(lay, xc, e, ic))
  out = jax.lax.map(lambda a: body(layers, emb, *a), (pad(x), pad(ids)))
  return out.reshape(-1)[:n]


def _interval_midpoints(bp):
  """Representative points of the intervals between sorted breakpoints.

  ``bp`` (m,) is sorted and finite.  Interval k is [bp[k-1], bp[k]) with
  bp[-1] = -inf and bp[m] = +inf; returns (m+1,) points inside each interval
  (zero-length intervals get their end point; no input ever lands there).
  """
  if bp.shape[0] == 0:
    return jnp.zeros((1,), bp.dtype)
  one = jnp.ones((), bp.dtype)
  left = bp[:1] - jnp.maximum(one, jnp.abs(bp[:1]))
  right = bp[-1:] + jnp.maximum(one, jnp.abs(bp[-1:]))
  inner = 0.5 * (bp[:-1] + bp[1:])
  return jnp.concatenate([left, inner, right])


def _finite_sorted(points, fallback):
  """Sorts points; non-finite (invalid) entries become duplicates of the max."""
  valid = jnp.isfinite(points)
  top = jnp.max(jnp.where(valid, points, -jnp.inf))
  top = jnp.where(jnp.isfinite(top), top, fallback)
  return jnp.sort(jnp.where(valid, points, top))


def pwl_table(layers) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """Breakpoints, slopes and intercepts of the MLP given by ``layers``.

  ``layers`` is a list of ``(kernel, bias)`` with shapes (1, H1), (H1, H2),
  ..., (HL, 1).  Returns ``bp`` (m,) sorted, and ``slope``, ``icpt`` (m+1,),
  such that ``f(x) = slope[k] * x + icpt[k]`` with ``k =
  searchsorted(bp, x, side='right')``.  Gradients flow to ``slope`` and
  ``icpt`` only.  The weights may be NumPy arrays (e.g. restored from a
  msgpack file or ``jax.device_get``): they are converted to JAX arrays, so
  the table can be built under ``jax.jit`` with them closed over.

  Args:
    layers: the MLP's ``(kernel, bias)`` pairs, first layer first (JAX or
      NumPy arrays).

  Returns:
    ``(bp, slope, icpt)``: the sorted breakpoints (m,) and the slope and
    intercept (m+1,) of each interval.
  """
  # NumPy weights would make ``a[parent]`` below a NumPy fancy index by a
  # traced array (TracerArrayConversionError under jit); work in jnp only.
  layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
  w0, b0 = layers[0]
  dtype = w0.dtype
  zero = jnp.zeros((), dtype)
  # Affine coefficients of the current layer's pre-activation per interval:
  # z(x) = a[k] * x + c[k].  Start: one interval (the whole line).
  a, c = w0[0][None, :], b0[None, :]
  bp = jnp.zeros((0,), dtype)
  for w, b in layers[1:]:
    # 1. refine the intervals by the zero crossings of this layer's units.
    lo = jnp.concatenate([jnp.full((1,), -jnp.inf, dtype), bp])
    hi = jnp.concatenate([bp, jnp.full((1,), jnp.inf, dtype)])
    a_ng, c_ng = jax.lax.stop_gradient(a), jax.lax.stop_gradient(c)
    safe_a = jnp.where(a_ng == 0, 1, a_ng)
    cross = jnp.where(a_ng == 0, jnp.inf, -c_ng / safe_a)
    cross = jnp.where((cross > lo[:, None]) & (cross < hi[:, None]), cross,
                      jnp.inf)
    new_bp = _finite_sorted(jnp.concatenate([bp, cross.ravel()]), zero)
    new_mid = jax.lax.stop_gradient(_interval_midpoints(new_bp))
    parent = jnp.searchsorted(bp, new_mid, side="right")
    # 2. the activation pattern of this layer on each new interval.
    a_p, c_p = a[parent], c[parent]
    on = jax.lax.stop_gradient(a_p * new_mid[:, None] + c_p > 0)
    # 3. the next layer's pre-activation is affine on each new interval.
    a = jnp.where(on, a_p, 0) @ w
    c = jnp.where(on, c_p, 0) @ w + b
    bp = new_bp
  return bp, a[:, 0], c[:, 0]


def _mlp_pwl(layers, x):
  bp, slope, icpt = pwl_table(layers)
  k = jnp.searchsorted(bp, jax.lax.stop_gradient(x), side="right")
  return slope[k] * x + icpt[k]


class Amplifier(nn.Module):
  """Scalar-to-scalar ReLU MLP ``1 -> hidden... -> 1`` scoring each component.

  ``Amplifier(hidden).apply(params, x)`` maps a 1-D array of gradient
  components to a 1-D array of scores of the same length, so it plugs into
  :func:`ngrok_jax.scale_by_amplifier` directly.

  Attributes:
    hidden: hidden layer sizes, e.g. ``(128, 128)`` or ``(576,)``.
    method: ``"pwl"`` (exact piecewise-linear table, default) or ``"dense"``.
    dtype: compute dtype of the dense path (``jnp.bfloat16`` is the mixed
      precision option; the piecewise path always uses float32).
    chunk: dense path only: evaluate in blocks of this many components with
      rematerialisation (``jax.checkpoint``), bounding the activation memory
      of the meta-gradient to ``O(chunk * width)``.  ``None`` (default):
      one block.
  """
  hidden: Sequence[int] = (128, 128)
  method: str = "pwl"
  dtype: jnp.dtype = jnp.float32
  chunk: Optional[int] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 1:
      raise ValueError(f"Amplifier expects a 1-D array, got shape {x.shape}")
    if not self.hidden or any(int(h) < 1 for h in self.hidden):
      raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
    if self.method not in ("pwl", "dense"):
      raise ValueError(f"unknown amplifier method {self.method!r}; "
                       "valid: 'pwl', 'dense'")
    sizes = (1,) + tuple(int(h) for h in self.hidden) + (1,)
    layers = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
      w = self.param(f"kernel_{i}", _torch_uniform(fi), (fi, fo))
      b = self.param(f"bias_{i}", _torch_uniform(fi), (fo,))
      layers.append((w, b))
    in_dtype = x.dtype
    if self.method == "dense":
      layers = [(w.astype(self.dtype), b.astype(self.dtype)) for w, b in layers]
      if self.chunk is not None and int(self.chunk) < 1:
        raise ValueError(f"chunk must be a positive integer, got {self.chunk}")
      if self.chunk:
        out = _mlp_dense_chunked(layers, x.astype(self.dtype), int(self.chunk))
      else:
        out = _mlp_dense(layers, x.astype(self.dtype))
    else:
      ft = jnp.promote_types(in_dtype, jnp.float32)
      layers = [(w.astype(ft), b.astype(ft)) for w, b in layers]
      out = _mlp_pwl(layers, x.astype(ft))
    return out.astype(jnp.promote_types(in_dtype, jnp.float32))


class RichAmplifier(nn.Module):
  r"""Amplifier with several inputs per component (``amp_inputs="rich"``).

  ``RichAmplifier(hidden, num_tensors).apply(params, x, ids)`` maps the
  (n, F) features ``x`` of :func:`rich_features` and the (n,) index ``ids``
  of each component's tensor to (n,) scores:

  .. math::
      f(x_i, t_i) = W_L \,\mathrm{relu}(\cdots \mathrm{relu}(
      W_1 x_i + b_1 + e_{t_i}) \cdots) + b_L,

  where :math:`e_t \in \mathbb{R}^{H_1}` is a learned embedding of tensor
  :math:`t` (initialised at zero, so at initialisation the scores depend on
  the features only).  The layers start as :class:`Amplifier`'s (PyTorch's
  uniform initialisation).  Dense evaluation only; ``chunk`` as in
  :class:`Amplifier`.

  Attributes:
    hidden: hidden layer sizes.
    num_tensors: the number of parameter tensors (embedding rows).
    num_features: F (default 4, :data:`RICH_FEATURES`).
    dtype: compute dtype (``jnp.bfloat16``: mixed precision).
    chunk: evaluate in rematerialised blocks of this many components.
  """
  hidden: Sequence[int] = (128, 128)
  num_tensors: int = 1
  num_features: int = len(RICH_FEATURES)
  dtype: jnp.dtype = jnp.float32
  chunk: Optional[int] = None

  @nn.compact
  def __call__(self, x: jax.Array, ids: jax.Array) -> jax.Array:
    if x.ndim != 2 or x.shape[1] != self.num_features:
      raise ValueError(f"RichAmplifier expects features of shape (n, "
                       f"{self.num_features}), got {x.shape}")
    if ids.shape != x.shape[:1]:
      raise ValueError(f"ids must have shape {x.shape[:1]}, got {ids.shape}")
    if not self.hidden or any(int(h) < 1 for h in self.hidden):
      raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
    if int(self.num_tensors) < 1:
      raise ValueError(f"num_tensors must be >= 1, got {self.num_tensors}")
    sizes = (int(self.num_features),) + tuple(int(h) for h in self.hidden) + (
        1,)
    layers = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
      w = self.param(f"kernel_{i}", _torch_uniform(fi), (fi, fo))
      b = self.param(f"bias_{i}", _torch_uniform(fi), (fo,))
      layers.append((w.astype(self.dtype), b.astype(self.dtype)))
    emb = self.param("tensor_embedding", nn.initializers.zeros,
                     (int(self.num_tensors), sizes[1])).astype(self.dtype)
    xd = x.astype(self.dtype)
    if self.chunk is not None and int(self.chunk) < 1:
      raise ValueError(f"chunk must be a positive integer, got {self.chunk}")
    if self.chunk:
      out = _mlp_dense_chunked(layers, xd, int(self.chunk), emb, ids)
    else:
      out = _mlp_dense(layers, xd, emb, ids)
    return out.astype(jnp.promote_types(x.dtype, jnp.float32))


def safe_normalize(u: jax.Array, c) -> jax.Array:
  """``c * u / ||u||``; an all-zero ``u`` gives zeros with a finite gradient.

  ``u`` is first divided by ``max|u|`` so that neither huge (1e30) nor tiny
  (1e-30) entries overflow or underflow the squared norm.  A NaN or inf in
  ``u`` gives NaN (it is never hidden as a finite update).

  Args:
    u: an array of any shape.
    c: the norm of the result (a number or a scalar array).

  Returns:
    An array of ``u``'s shape, of norm ``c`` (zeros for an all-zero ``u``),
    in ``u``'s dtype promoted to at least float32.
  """
  u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
  m = jnp.max(jnp.abs(u)) if u.size else jnp.zeros([], u.dtype)
  is_zero = m == 0
  v = u / jnp.where(is_zero, jnp.ones_like(m), m)
  norm = jnp.sqrt(jnp.where(is_zero, jnp.ones_like(m), jnp.sum(jnp.square(v))))
  return jnp.where(is_zero, jnp.zeros_like(u), c * v / norm)


def amplify(grads, score_fn: Callable[[jax.Array], jax.Array], c=1.0):
  """Applies ``g' = c * (s * g) / ||s * g||`` with ``s = softmax(score_fn(g))``.

  The softmax and the norm are taken per leaf (parameter tensor); the score
  function is called once on all components concatenated.  Leaves keep their
  dtype.

  Args:
    grads: the gradient pytree.
    score_fn: maps the (n,) concatenated components to (n,) scores (e.g.
      ``lambda x: Amplifier(...).apply(phi, x)``).
    c: the norm of every output tensor.

  Returns:
    A pytree of ``grads``' structure and dtypes, each tensor of norm ``c``
    (an all-zero tensor stays zero).

  Raises:
    ValueError: ``score_fn`` does not map (n,) to (n,).
  """
  leaves, treedef = jax.tree.flatten(grads)
  if not leaves:
    return grads
  ft = jnp.result_type(jnp.float32, *[l.dtype for l in leaves])
  flat = jnp.concatenate([jnp.ravel(l).astype(ft) for l in leaves])
  scores = score_fn(flat)
  if scores.shape != flat.shape:
    raise ValueError(f"the score function returned shape {scores.shape} for "
                     f"input shape {flat.shape}; it must map (n,) -> (n,)")
  out, start = [], 0
  for leaf in leaves:
    n = leaf.size
    if n == 0:  # a zero-size leaf passes through
      out.append(jnp.zeros(leaf.shape, leaf.dtype))
      continue
    g = flat[start:start + n]
    s = jax.nn.softmax(scores[start:start + n].astype(ft))
    # g / max|g| first (the result is scale invariant in g): the product
    # s * g of tiny components would otherwise underflow to zero (e.g. two
    # components of 1.2e-38 in float32: s = 0.5 makes them subnormal, and
    # CPUs flush those to 0, so the output lost its norm c).
    m = jnp.max(jnp.abs(g))
    g = g / jnp.where(m == 0, jnp.ones_like(m), m)
    out.append(safe_normalize(s * g, c).reshape(leaf.shape).astype(leaf.dtype))
    start += n
  return jax.tree.unflatten(treedef, out)
