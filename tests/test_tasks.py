import numpy as np
import pytest

import ngrok_jax as nj
from ngrok_jax._src.core.tasks import split_sizes

FORMULAS = {
    "a+b": lambda a, b, p: (a + b) % p,
    "a-b": lambda a, b, p: (a - b) % p,
    "a*b": lambda a, b, p: (a * b) % p,
    "a*a-b": lambda a, b, p: (a * a - b) % p,
    "a+b-a*b": lambda a, b, p: (a + b - a * b) % p,
    "a/b": lambda a, b, p: next(x for x in range(p) if (x * b) % p == a),
}


@pytest.mark.parametrize("name", ["a+b", "a-b", "a*b", "a*a-b", "a+b-a*b"])
def test_binary_task_sizes_and_labels(name):
  t = nj.make_task(name, 97)
  assert t.num_examples == 9312
  # the reference's layouts: [a, b, op1, =] (vocabulary p + 2), and
  # [a, b, op1, op2, =] for a*a-b (vocabulary p + 3)
  ops = 2 if name == "a*a-b" else 1
  assert t.vocab_size == 97 + 1 + ops and t.seq_len == 3 + ops
  x, y = np.asarray(t.inputs), np.asarray(t.labels)
  assert x.dtype == np.int32 and y.dtype == np.int32
  a, b = x[:, 0].astype(np.int64), x[:, 1].astype(np.int64)
  assert a.min() == 0 and a.max() == 96 and b.min() == 1 and b.max() == 96
  np.testing.assert_array_equal(y, FORMULAS[name](a, b, 97))
  np.testing.assert_array_equal(x[:, 2:2 + ops], np.arange(98, 98 + ops)[None].repeat(9312, 0))
  assert (x[:, -1] == 97).all()
  # every (a, b) pair exactly once, a varying slowest (the reference's order)
  assert len(set(map(tuple, x[:, :2].tolist()))) == 9312
  assert (np.diff(a) >= 0).all()


def test_division_labels():
  t = nj.make_task("a/b", 13)
  x, y = np.asarray(t.inputs), np.asarray(t.labels)
  for (a, b, _, _), lab in zip(x, y):
    assert (lab * b) % 13 == a


def test_five_operand_task():
  t = nj.make_task("a*c+b*d-e", 7)
  assert t.num_examples == 12348 and t.seq_len == 9 and t.vocab_size == 11
  x = np.asarray(t.inputs).astype(np.int64)
  # the reference's layout [a, b, c, d, e, op1, op2, op3, =]
  a, b, c, d, e = x[:, :5].T
  np.testing.assert_array_equal(np.asarray(t.labels), (a * c + b * d - e) % 7)
  assert c.min() == 1 and d.min() == 1 and a.min() == 0 and e.min() == 0
  assert (x[:, 5:8] == [8, 9, 10]).all() and (x[:, 8] == 7).all()


def test_split_disjoint_covering_deterministic():
  t = nj.make_task("a+b", 97)
  sp = nj.make_split(t, seed=3)
  tr, out, te = (np.asarray(sp[k]) for k in ("train", "outer", "test"))
  # the reference's sizes: floor(0.49 n), floor(0.01 n), the rest
  assert (len(tr), len(out), len(te)) == (4562, 93, 4657)
  allidx = np.concatenate([tr, out, te])
  assert len(set(allidx.tolist())) == 9312  # disjoint and covering
  sp2 = nj.make_split(t, seed=3)
  for k in sp:
    np.testing.assert_array_equal(np.asarray(sp[k]), np.asarray(sp2[k]))
  sp3 = nj.make_split(t, seed=4)
  assert not np.array_equal(np.asarray(sp3["train"]), tr)


def test_pooled_split_trains_on_half_and_contains_outer():
  t = nj.make_task("a+b", 97)
  sp = nj.make_split(t, seed=3)
  pooled = nj.make_split(t, seed=3, pool_outer=True)
  tr, out, te = (np.asarray(pooled[k]) for k in ("train", "outer", "test"))
  assert (len(tr), len(te)) == (4656, 4656)  # floor(0.5 n), the rest
  assert set(out.tolist()) <= set(tr.tolist())
  assert set(np.asarray(sp["train"]).tolist()) <= set(tr.tolist())
  assert not set(tr.tolist()) & set(te.tolist())
  assert len(set(tr.tolist()) | set(te.tolist())) == 9312


def test_stacked_splits_match_single():
  t = nj.make_task("a-b", 11)
  sps = nj.make_splits(t, [0, 5])
  assert sps["train"].shape[0] == 2
  np.testing.assert_array_equal(np.asarray(sps["test"][1]),
                                np.asarray(nj.make_split(t, 5)["test"]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="a^b", p=7), "valid tasks"),
    (dict(name="a+b", p=1), "p must be"),
    (dict(name="a+b", p=2.5), "p must be"),
    (dict(name="a/b", p=12), "prime"),
])
def test_bad_task_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    nj.make_task(**kwargs)


@pytest.mark.parametrize("fractions,match", [
    ((0.5, -0.1, 0.5), ">= 0"),
    ((0.6, 0.1, 0.5), "sum"),
    ((0.5, 0.0, 0.5), "outer split is empty"),
    ((0.5, 0.5), "train, outer, test"),
])
def test_bad_fractions(fractions, match):
  with pytest.raises(ValueError, match=match):
    split_sizes(100, fractions)
