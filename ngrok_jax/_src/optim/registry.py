r"""The training methods: one :class:`Method` record per method.

A record holds everything the library knows about a method: its gradient
transformation (a factory of the config and the per-seed hyperparameters),
its defaults and tuning grid, whether its weight decay is coupled, whether
it is clipped by default, which extra ``update`` arguments it needs, and
whether it uses an amplifier.  The configuration's choices
(:data:`ngrok_jax.METHODS`), the training step, the evaluation, the presets
and ``experiments.tune`` read these properties; no other module tests a
method's name.

Adding a method means adding one record to :data:`RECORDS` (with its
transform and its tests)::

    Method("sign", "signSGD", transform=lambda cfg, hp, parts: ...,
           grid={"lr": (1e-3, 3e-3), "wd": (0.0, 1e-3)})

The factories get the config ``cfg`` (a :class:`ngrok_jax.TrainConfig`),
the hyperparameters ``hp`` (name -> scalar or traced array) and
:class:`MethodParts` (the pieces built from the model: the amplifier and the
meta optimizer, for the amplifier methods).  This module sits below the
configuration: it imports only the transformations.

The records are the library's own methods; :func:`register` adds one at
run time (a user's optimizer: :func:`ngrok_jax.register_method`, or
``--methods module:factory``), and :data:`METHOD_NAMES` is the live list of
the registered names.  The method names appear in this module only: the
other modules read the records' properties and the roles below
(:data:`DEFAULT_METHOD`, :data:`PAPER_METHODS`, ...).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import optax

from ngrok_jax._src.optim.egd import scale_by_egd
from ngrok_jax._src.optim.neuralgrok import neuralgrok
from ngrok_jax._src.optim.pretrained import pretrained_rule, resolve_rule
from ngrok_jax._src.optim.transforms import (clip_by_global_norm, coupled_adam,
                                             grokfast_ema, grokfast_ma,
                                             normalize_gradients,
                                             orthogonalize_gradients,
                                             project_weight_norm,
                                             scale_by_amplifier)

__all__ = ["Method", "MethodParts", "RECORDS", "get_method", "method_names",
           "register", "unregister", "METHOD_NAMES", "MethodNames",
           "adam_chain", "with_projection", "warmup_lr", "muon_dimension_numbers",
           "LR_GRID", "META_UPDATE_ARGS", "DEFAULT_METHOD", "DEFAULT_METHODS",
           "PAPER_METHODS", "QUICK_METHODS"]

#: The learning rates of every method's default tuning grid.
LR_GRID = (1e-3, 3e-3)
#: The extra ``update`` arguments of a meta-learned amplifier
#: (:func:`ngrok_jax.neuralgrok`): the clock of its meta steps (``count``:
#: the training step) and the two losses.
META_UPDATE_ARGS = ("count", "train_loss", "outer_loss")
#: Defaults of the hyperparameters that are ``None`` in a
#: :class:`ngrok_jax.TrainConfig`, unless a record's ``defaults`` say else.
_BASE_DEFAULTS = {"wd": 0.0, "lamb": 2.0}


class MethodParts(NamedTuple):
  """What a method's factories get besides the config and hyperparameters:
  the pieces built from the model (all ``None`` for methods without an
  amplifier).

  Attributes:
    amplifier: the amplifier's ``apply(phi, x)``.
    features: the amplifier's features callable (``None``: the gradient).
    amp_params: the amplifier parameters (the optimizer's ``init`` starts
      from them; the evaluation's transform uses the current ones).
    meta_optimizer: the amplifier's (meta) optimizer.
  """
  amplifier: Optional[Callable] = None
  features: Optional[Callable] = None
  amp_params: Any = None
  meta_optimizer: Optional[optax.GradientTransformation] = None


Factory = Callable[..., optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class Method:
  """One training method.

  Attributes:
    name: the value of ``TrainConfig.method`` (``--methods``).
    summary: one line for the docs.
    transform: ``transform(cfg, hp, parts)``: the method's own gradient
      transformation (before clip and Adam; what the evaluation's
      ``grad/*_transformed`` metrics measure).
    optimizer: ``optimizer(cfg, hp, parts, adam)``: the method's whole
      optimizer, when it is not ``chain(transform, adam)`` (``adam``: the
      clip, weight decay, Adam and warm-up of :func:`adam_chain`, with the
      weight-norm projection).  Its transform is then stateless.
    defaults: defaults of the ``None``-defaulted hyperparameters (``wd``,
      ``lamb``) where they differ from wd 0 and lamb 2.
    grid: the tuning grid of ``experiments.tune`` (``None``: not tunable).
    coupled_decay: weight decay added to the gradient (PyTorch
      ``Adam(weight_decay=wd)``); ``False``: decoupled (AdamW's).
    clipped: clipped at global norm 1 by default (else ``clip=inf``).
    uses_amplifier: its optimizer state holds amplifier parameters.
    update_args: the extra keyword arguments its ``update`` needs
      (:data:`META_UPDATE_ARGS` for a meta-learned amplifier).
    needs_trained_amplifier: it starts from a trained amplifier
      (``--amplifier``), which it needs.
    published: the method's own published settings (config fields), used
      by the paper presets.
    check: ``check(cfg)`` validates the config fields only this method
      reads (``TrainConfig.validate`` calls it; raises ValueError).
    options: the config fields only some methods read, this one among them
      (the command line refuses one no chosen method names).
    color: its colour in every figure (``None``: the default cycle).
    origin: where a user's method comes from (``source``:
      ``"module:factory"``, ``file``: the module's path, ``sha256``: its
      source's hash; recorded in the run folder's ``config.json``, which
      ``--resume`` re-imports); ``None`` for the library's own methods.
  """
  name: str
  summary: str
  transform: Factory
  optimizer: Optional[Factory] = None
  defaults: Mapping[str, float] = dataclasses.field(default_factory=dict)
  grid: Optional[Mapping[str, Tuple[float, ...]]] = None
  coupled_decay: bool = True
  clipped: bool = False
  uses_amplifier: bool = False
  update_args: Tuple[str, ...] = ()
  needs_trained_amplifier: bool = False
  published: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  check: Optional[Callable[[Any], None]] = None
  options: Tuple[str, ...] = ()
  color: Optional[str] = None
  origin: Optional[Mapping[str, str]] = None

  @property
  def needs_outer_batch(self) -> bool:
    """Its ``update`` needs the outer (meta-validation) loss, so it trains
    on the inner split only, and the step reports ``outer_loss``."""
    return "outer_loss" in self.update_args

  @property
  def learns_amplifier(self) -> bool:
    """It meta-learns an amplifier (the ``amp/*``, ``meta/*`` metrics)."""
    return self.uses_amplifier and self.needs_outer_batch

  @property
  def tunable(self) -> bool:
    return self.grid is not None

  def default(self, name: str) -> float:
    """The default of the ``None``-defaulted hyperparameter ``name``."""
    if name == "clip":
      return 1.0 if self.clipped else math.inf
    return float(self.defaults.get(name, _BASE_DEFAULTS[name]))

  def build(self, cfg, hp, parts: MethodParts = MethodParts()
            ) -> optax.GradientTransformationExtraArgs:
    """The whole optimizer of this method for ``cfg`` and ``hp``.

    Args:
      cfg: the :class:`ngrok_jax.TrainConfig`.
      hp: the numeric hyperparameters (name -> scalar or traced array).
      parts: the amplifier's pieces (amplifier methods).

    Returns:
      ``optimizer(cfg, hp, parts, adam)``, or ``chain(transform, adam)``.
    """
    adam = with_projection(cfg, adam_chain(
        cfg, hp, decoupled=not self.coupled_decay))
    if self.optimizer is not None:
      return self.optimizer(cfg, hp, parts, adam)
    return optax.chain(self.transform(cfg, hp, parts), adam)


# ------------------------------------------------------------ shared pieces
def with_projection(cfg, tx) -> optax.GradientTransformationExtraArgs:
  """``tx``, then the weight-norm projection when ``cfg.fix_weight_norm``.

  Args:
    cfg: the config (reads ``fix_weight_norm``).
    tx: the optimizer.

  Returns:
    ``tx`` (with extra-args support) or ``chain(tx, project_weight_norm)``.
  """
  if cfg.fix_weight_norm is None:
    return optax.with_extra_args_support(tx)
  return optax.chain(tx, project_weight_norm(cfg.fix_weight_norm))


def adam_chain(cfg, hp, *, decoupled: bool) -> optax.GradientTransformation:
  """Clip, weight decay (coupled, or AdamW's) and Adam with the warm-up.

  Args:
    cfg: the config (reads ``warmup_steps``).
    hp: the hyperparameters (``lr``, ``wd``, ``b1``, ``b2``, ``eps``,
      ``eps_root``, ``clip``).
    decoupled: AdamW's decay instead of the coupled one.

  Returns:
    :func:`ngrok_jax.coupled_adam` of those settings.
  """
  return coupled_adam(hp["lr"], hp["wd"], hp["b1"], hp["b2"], hp["eps"],
                      hp["eps_root"], cfg.warmup_steps, hp["clip"],
                      decoupled=decoupled)


def _extra(tx) -> optax.GradientTransformationExtraArgs:
  return optax.with_extra_args_support(tx)


def warmup_lr(cfg, hp):
  """The learning rate with the warm-up: ``optax.linear_schedule`` from 0 to
  ``hp["lr"]`` over ``cfg.warmup_steps`` steps (``hp["lr"]`` itself without
  warm-up); the methods that do not use :func:`adam_chain` take it.

  Args:
    cfg: the config (reads ``warmup_steps``).
    hp: the hyperparameters (reads ``lr``).

  Returns:
    A schedule or the learning rate.
  """
  return (optax.linear_schedule(0.0, hp["lr"], cfg.warmup_steps)
          if cfg.warmup_steps > 0 else hp["lr"])


def muon_dimension_numbers(params):
  """Which leaves Muon orthogonalises: the 2-D kernels inside the
  transformer blocks (attention ``qkv``/``proj``, MLP ``fc``/``out``),
  ``MuonDimensionNumbers(0, 1)`` (``x @ W``); ``None`` (AdamW) for the token
  and position embeddings, the output head, biases and LayerNorms.

  Args:
    params: the model's parameters.

  Returns:
    A tree of ``MuonDimensionNumbers`` or ``None``, one per leaf.
  """
  def spec(path, leaf):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    hidden = (leaf.ndim == 2 and names[-1] == "kernel" and
              any(isinstance(n, str) and n.startswith("block_")
                  for n in names))
    return optax.contrib.MuonDimensionNumbers(0, 1) if hidden else None
  return jax.tree_util.tree_map_with_path(spec, params)


def _muon(cfg, hp, parts, adam):
  """Muon (momentum 0.95, Nesterov, 5 Newton-Schulz steps) on the blocks'
  matrices and AdamW (``b1``, ``b2``) on the other leaves, one learning rate
  with the warm-up, decoupled weight decay ``wd`` on both, the global-norm
  clip first.  ``consistent_rms=0.2`` scales Muon's updates to AdamW's RMS,
  so one learning rate serves both parts (and the other methods' grid)."""
  del parts, adam
  lr = warmup_lr(cfg, hp)
  muon = optax.contrib.muon(
      lr, eps=hp["eps"], weight_decay=hp["wd"], adam_b1=hp["b1"],
      adam_b2=hp["b2"], adam_eps_root=hp["eps_root"],
      adam_weight_decay=hp["wd"], consistent_rms=0.2,
      muon_weight_dimension_numbers=muon_dimension_numbers)
  return _extra(with_projection(
      cfg, optax.chain(clip_by_global_norm(hp["clip"]), muon)))


def _egd(cfg, hp, parts, adam):
  r"""EGD (Pasand and Dohmatob 2026): every leaf's gradient replaced by its
  polar factor (:func:`ngrok_jax.polar_factor`), then plain descent
  with the warm-up and decoupled weight decay, no momentum:
  :math:`W \leftarrow W - \eta_t (U V^\top + \mathrm{wd}\, W)`.  No clip:
  the polar factor does not depend on the gradient's scale."""
  del parts, adam
  lr = warmup_lr(cfg, hp)
  return _extra(with_projection(cfg, optax.chain(
      scale_by_egd(), optax.add_decayed_weights(hp["wd"]),
      optax.scale_by_learning_rate(lr))))


def _learned_rule(cfg, hp, parts, adam):
  r"""A learned rule (``cfg.rule``: the shipped one by default, see
  :func:`ngrok_jax.pretrained_rule`), frozen, at the learning rate ``lr``
  (with the warm-up) instead of the one it was meta-trained with, and
  AdamW's decoupled weight decay:
  :math:`\theta \leftarrow \theta + \eta_t (r / \eta_r - \mathrm{wd}\,
  \theta)`, :math:`r` the rule's update at its own rate :math:`\eta_r`; the
  global-norm clip first.  A ``placement="muon"`` rule orthogonalises the
  leaves :func:`muon_dimension_numbers` names, as the method ``muon``,
  and its own weight decay is replaced by ``wd``: at initialisation it is
  the method ``muon``."""
  del parts, adam
  lr = warmup_lr(cfg, hp)
  return _extra(with_projection(cfg, optax.chain(
      clip_by_global_norm(hp["clip"]),
      pretrained_rule(cfg.rule, lr=1.0, wd=0.0,
                      dimension_numbers=muon_dimension_numbers),
      optax.scale(-1.0), optax.add_decayed_weights(hp["wd"]),
      optax.scale_by_learning_rate(lr))))


def _amplifier_transform(cfg, hp, parts):
  del cfg
  return scale_by_amplifier(parts.amplifier, parts.amp_params, c=hp["c"])


def _neuralgrok(meta: bool):
  """The optimizer of an amplifier method: :func:`ngrok_jax.neuralgrok`
  around clip + Adam (``meta=False``: the amplifier kept frozen)."""
  def build(cfg, hp, parts, adam):
    return neuralgrok(
        adam, parts.amplifier, parts.amp_params,
        meta_every=cfg.meta_every if meta else 0, c=hp["c"],
        lookahead=("inner" if cfg.lookahead == "inner"
                   else optax.sgd(hp["lookahead_lr"])),
        meta_optimizer=parts.meta_optimizer, placement=cfg.meta_placement,
        lookahead_steps=cfg.lookahead_steps, features=parts.features,
        meta_axis_name=cfg.meta_axis_name if meta else None)
  return build


def _grid(wd, **more) -> Dict[str, Tuple[float, ...]]:
  return {"lr": LR_GRID, "wd": tuple(wd), **more}


# Weight decay is coupled (L2 in Adam's gradient) or decoupled (AdamW's,
# times the learning rate), so the grids differ: coupled 0 / 1e-3 / 1e-2
# (NeuralGrok's recipe uses 1e-3); GrokFast 1e-3 / 1e-2 around its published
# 0.005 and 0.01, with lamb 1 / 2 (EMA, published 2) and 2 / 5 (MA,
# published 5); AdamW and Muon 0.3 / 1 / 3 (1: Power et al.); ⊥AdamW
# 0 / 0.3 / 1 (the paper groks without weight decay).
_COUPLED_WD = (0.0, 1e-3, 1e-2)
# The config fields of the amplifier and of its meta step (options).
_AMP_OPTIONS = ("amp_hidden", "amp_method", "amp_dtype", "amp_chunk",
                "amp_inputs", "c")
_META_OPTIONS = ("meta_every", "lookahead", "meta_placement", "lookahead_steps",
                 "meta_schedule", "meta_schedule_steps", "meta_lr", "meta_wd",
                 "lookahead_lr")

#: Every method, in the order of ``--methods``'s help.
RECORDS: Tuple[Method, ...] = (
    Method("adam", "Adam with coupled weight decay (the reference's "
           "baseline)",
           color="#ff7f0e",
           transform=lambda cfg, hp, parts: _extra(optax.identity()),
           grid=_grid(_COUPLED_WD)),
    Method("adamw", "AdamW, decoupled weight decay (Power et al. 2022)",
           color="#d62728",
           transform=lambda cfg, hp, parts: _extra(optax.identity()),
           defaults={"wd": 1.0}, grid=_grid((0.3, 1.0, 3.0)),
           coupled_decay=False, published={"wd": 1.0}),
    Method("grokfast-ema", "GrokFast-EMA (Lee et al. 2024) before Adam",
           color="#9467bd",
           transform=lambda cfg, hp, parts: _extra(
               grokfast_ema(hp["alpha"], hp["lamb"])),
           grid=_grid((1e-3, 1e-2), lamb=(1.0, 2.0)),
           published={"wd": 0.005, "alpha": 0.98, "lamb": 2.0},
           options=("alpha", "lamb")),
    Method("grokfast-ma", "GrokFast-MA (Lee et al. 2024) before Adam",
           color="#8c564b",
           transform=lambda cfg, hp, parts: _extra(
               grokfast_ma(cfg.window, hp["lamb"])),
           defaults={"lamb": 5.0}, grid=_grid((1e-3, 1e-2), lamb=(2.0, 5.0)),
           published={"wd": 0.01, "window": 100, "lamb": 5.0},
           options=("window", "lamb")),
    Method("rescale", "per-tensor rescaling to norm c (NeuralGrok's "
           "amplifier with constant scores), clipped",
           color="#2ca02c",
           transform=lambda cfg, hp, parts: _extra(
               normalize_gradients(hp["c"])),
           grid=_grid(_COUPLED_WD), clipped=True, options=("c",)),
    Method("orthograd", "⊥AdamW: the gradient's component orthogonal to the "
           "weights, then AdamW (Prieto et al. 2025)",
           color="#e377c2",
           transform=lambda cfg, hp, parts: _extra(orthogonalize_gradients()),
           grid=_grid((0.0, 0.3, 1.0)), coupled_decay=False),
    Method("muon", "Muon on the blocks' matrices, AdamW on the rest",
           color="#7f7f7f",
           transform=lambda cfg, hp, parts: _extra(optax.identity()),
           optimizer=_muon, defaults={"wd": 1.0},
           grid=_grid((0.3, 1.0, 3.0)), coupled_decay=False),
    # The polar factor of a d x d matrix has entries of RMS 1/sqrt(d)
    # (1/8 at d 64), Adam's early updates about 1: EGD's grid is about 10x
    # Adam's learning rates (a rationale, not yet a measurement here).
    Method("egd", "EGD: each gradient matrix replaced by its polar factor "
           "U V^T, plain descent, no momentum (Pasand and Dohmatob 2026)",
           color="#bcbd22",
           transform=lambda cfg, hp, parts: _extra(scale_by_egd()),
           optimizer=_egd, grid={"lr": (1e-2, 3e-2, 1e-1), "wd": (0.0, 0.1)},
           coupled_decay=False),
    # The learned rule's update has per-tensor RMS <= 2 lr, as Adam's about
    # lr: the same learning rates apply.
    Method("learned-rule", "a learned update rule, frozen, with AdamW's "
           "decoupled weight decay (--rule; default: the shipped rule, "
           "meta-trained across arithmetic tasks and primes)",
           color="#17becf",
           transform=lambda cfg, hp, parts: _extra(optax.identity()),
           optimizer=_learned_rule, grid=_grid((0.0, 0.3, 1.0)),
           check=lambda cfg: resolve_rule(cfg.rule),
           coupled_decay=False, options=("rule",)),
    Method("neuralgrok", "NeuralGrok: a meta-learned amplifier before clip "
           "and Adam (Zhou et al. 2025)",
           color="#1f77b4",
           transform=_amplifier_transform, optimizer=_neuralgrok(True),
           grid=_grid(_COUPLED_WD), clipped=True, uses_amplifier=True,
           update_args=META_UPDATE_ARGS,
           options=_AMP_OPTIONS + _META_OPTIONS),
    Method("neuralgrok-frozen", "NeuralGrok's amplifier, trained elsewhere "
           "and kept frozen",
           color="#393b79",
           transform=_amplifier_transform, optimizer=_neuralgrok(False),
           clipped=True, uses_amplifier=True, needs_trained_amplifier=True,
           options=_AMP_OPTIONS),
)

_BY_NAME: Dict[str, Method] = {m.name: m for m in RECORDS}
if len(_BY_NAME) != len(RECORDS):
  raise ValueError("two method records share a name")

# The methods' roles (the other modules name no method; they read these).
#: ``TrainConfig.method``'s default, the one method of a cross-task run and
#: the reference of the paired tables: NeuralGrok.
DEFAULT_METHOD = "neuralgrok"
#: The methods of a run that names none (no preset): NeuralGrok and its
#: baseline.
DEFAULT_METHODS = ("neuralgrok", "adam")
#: The paper's comparison, in its order (the ``paper-*`` and ``early-*``
#: presets run these).
PAPER_METHODS = ("neuralgrok", "rescale", "adam", "adamw", "grokfast-ema",
                 "grokfast-ma")
#: The ``quick`` preset's methods.
QUICK_METHODS = ("neuralgrok", "rescale", "adam")
for _role in (DEFAULT_METHOD, *DEFAULT_METHODS, *PAPER_METHODS,
              *QUICK_METHODS):
  if _role not in _BY_NAME:
    raise ValueError(f"a role names {_role!r}, which no record has")


class MethodNames(collections.abc.Sequence):
  """The registered methods' names, in order, as they are now: a read-only
  view (a method registered later is in it), equal to the tuple of the
  names (:data:`ngrok_jax.METHODS` is one)."""

  def __getitem__(self, i):
    return tuple(_BY_NAME)[i]

  def __len__(self) -> int:
    return len(_BY_NAME)

  def __contains__(self, name) -> bool:
    return isinstance(name, str) and name in _BY_NAME

  def __iter__(self):
    return iter(tuple(_BY_NAME))

  def __eq__(self, other) -> bool:
    if isinstance(other, (MethodNames, tuple)):
      return tuple(self) == tuple(other)
    return NotImplemented

  __hash__ = None

  def __repr__(self) -> str:
    return repr(tuple(self))


#: Every registered method's name (the live view of :class:`MethodNames`).
METHOD_NAMES = MethodNames()


def method_names() -> Tuple[str, ...]:
  """Every registered method's name, in the records' order (then the
  order of registration)."""
  return tuple(_BY_NAME)


def register(record: Method) -> Method:
  """Adds a method record (or replaces a registered user's method of the
  same name): the command line's ``--methods``, the configuration, the
  run folders and ``experiments.tune`` then know it, as a record of
  :data:`RECORDS`.  :func:`ngrok_jax.register_method` builds one around
  an optax optimizer.

  Args:
    record: the :class:`Method`.

  Returns:
    The record.

  Raises:
    ValueError: ``record`` is not a :class:`Method`, its name is a method of
      the library's own, or not a usable name.
  """
  if not isinstance(record, Method):
    raise ValueError(f"register takes a Method record, got "
                     f"{type(record).__name__}")
  name = record.name
  if not (isinstance(name, str) and name and name.strip() == name and
          not any(c in name for c in ",:/\\")):
    raise ValueError(f"a method name must be a non-empty string without "
                     f"spaces around it and without , : / \\, got {name!r}")
  if any(r.name == name for r in RECORDS):
    raise ValueError(f"method {name!r} is one of the library's own; give "
                     "yours another name")
  _BY_NAME[name] = record
  return record


def unregister(name: str) -> None:
  """Removes a method added by :func:`register` (the library's own stay).

  Args:
    name: the method's name.

  Raises:
    ValueError: ``name`` is one of the library's own methods, or unknown.
  """
  if any(r.name == name for r in RECORDS):
    raise ValueError(f"method {name!r} is one of the library's own")
  get_method(name)
  del _BY_NAME[name]


def get_method(name: str) -> Method:
  """The record of method ``name``.

  Args:
    name: a method's name.

  Returns:
    Its :class:`Method`.

  Raises:
    ValueError: naming the valid methods, for an unknown name.
  """
  if not isinstance(name, str) or name not in _BY_NAME:
    raise ValueError(f"unknown method {name!r}; valid methods: "
                     f"{', '.join(_BY_NAME)}")
  return _BY_NAME[name]
