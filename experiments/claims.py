"""Every number the results prose states, recomputed from the exported data.

A *claim* is a piece of text in RESULTS.md or README.md that states data
(``"1.85x (n 3)"``, ``"+0.20 [0.04, 0.37]"``): its id, the run folders under
``experiments/results/`` it comes from, and a function that recomputes the
text from those folders (``ngrok_jax.results`` / ``ngrok_jax.stats``, no
training).  A *generated table* is a markdown table recomputed the same way.

Checks (``python -m experiments.claims``; ``tests/test_claims.py`` runs them
in CI):

1. every claim's recomputed text appears in RESULTS.md (README.md: where
   present; it may be shortened or moved);
2. inside the checked regions of both files (between ``<!-- claims:begin -->``
   and ``<!-- claims:end -->``), every number of a prose paragraph lies in
   the text of some claim or in a phrase of :data:`NON_DATA` (configuration
   values, thresholds, budgets: numbers that are set, not measured); a
   paragraph after a ``<!-- claims:config -->`` line states configuration
   only and is not checked;
3. every table inside a checked region is one of the generated tables,
   recomputed and compared cell by cell (or is listed in :data:`EXEMPT` with
   the reason it cannot be regenerated here).

    python -m experiments.claims            # check; exit 1 on a mismatch
    python -m experiments.claims --list     # every claim and its text
"""
import argparse
import functools
import os
import re
import sys

import numpy as np

from experiments import _claims as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("RESULTS.md", R.ARCHIVE, "README.md")
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
#: Before a paragraph: it states configuration only (set, not measured).
CONFIG = "<!-- claims:config -->"
NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[+-]?\d+)?")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


# --------------------------------------------------------------- markdown
def _clean(line: str) -> str:
  """Prose text of a line: no inline code, link targets, bold markers,
  dates."""
  line = re.sub(r"`([^`]*)`", lambda m: " " if re.search(r"\d", m.group(1))
                else m.group(1), line)
  line = re.sub(r"\]\([^)]*\)", "]", line)
  line = line.replace("**", "")
  line = re.sub(r"et al\.,? \d{4}", "et al.", line)  # citations
  return DATE.sub(" ", line)


def blocks(text: str):
  """``(kind, text, line, checked)`` for each block of a markdown text:
  kind ``prose`` (a paragraph or list item, lines joined by single spaces,
  cleaned by :func:`_clean`) or ``table`` (its lines as they are); code
  fences, headings, images and HTML comments are skipped; ``checked``: the
  block lies between the claims markers."""
  out, cur, kind, start = [], [], None, 0
  checked = fence = config = False

  config_block = False

  def flush():
    nonlocal cur, kind, config_block
    if cur:
      body = ("\n".join(cur) if kind == "table" else
              re.sub(r"\s+", " ", " ".join(cur)).strip())
      if kind == "table":
        body = table_norm(body)
      out.append((kind, body, start, checked and not config_block))
    cur, kind = [], None

  for i, line in enumerate(text.split("\n"), 1):
    s = line.strip()
    if s.startswith("```"):
      flush()
      fence = not fence
      continue
    if fence:
      continue
    if s in (BEGIN, END):
      flush()
      checked = s == BEGIN
      continue
    if s == CONFIG:
      flush()
      config = True
      continue
    if not s or s.startswith(("#", "![", "<!--")):
      flush()
      continue
    k = "table" if re.match(r"\|[\s:-]", s) else "prose"
    item = k == "prose" and re.match(r"([-*] |\d{1,2}\. )", s)
    if k != kind or item:
      flush()
      kind, start = k, i
      config_block, config = config, False
    if k == "prose" and item and not cur:
      s = re.sub(r"^\d{1,2}\. ", "", s)  # a numbered list's marker
    cur.append(line.rstrip() if k == "table" else _clean(s))
  flush()
  return out


def table_norm(text: str) -> str:
  """A markdown table with its cells stripped and ``|---|`` separators."""
  out = []
  for line in text.strip().split("\n"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if all(re.fullmatch(r":?-+:?", c) for c in cells):
      cells = ["---"] * len(cells)
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def norm(text: str) -> str:
  """Whitespace-collapsed prose, as claims are matched."""
  return re.sub(r"\s+", " ", _clean(text)).strip()


# ----------------------------------------------------------------- checks
@functools.lru_cache(maxsize=None)
def _read(doc: str) -> str:
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


@functools.lru_cache(maxsize=None)
def _data():
  return R.Data(ROOT)


def claim_texts():
  """``{claim id: recomputed text}``, and the errors of claims that could
  not be computed."""
  out, errors = _claim_texts()
  return dict(out), list(errors)


@functools.lru_cache(maxsize=None)
def _claim_texts():
  data, out, errors = _data(), {}, []
  for c in R.CLAIMS:
    try:
      out[c.id] = norm(c.compute(data))
    except Exception as e:  # noqa: BLE001 (reported, the check fails)
      errors.append(f"claim {c.id}: cannot recompute ({e})")
  return out, tuple(errors)


@functools.lru_cache(maxsize=None)
def _tables():
  data, tables, errors = _data(), {}, []
  for t in R.TABLES:
    try:
      tables[t.id] = table_norm(t.compute(data))
    except Exception as e:  # noqa: BLE001 (reported, the check fails)
      errors.append(f"table {t.id}: cannot recompute ({e})")
  return tables, tuple(errors)


def _spans(para: str, phrases) -> list:
  spans = []
  for p in phrases:
    for m in re.finditer(re.escape(p), para):
      spans.append((m.start(), m.end()))
  return spans


def check(docs=DOCS, read=None):
  """Every error found (strings); empty: prose and tables match the data.

  Args:
    docs: the documents checked.
    read: ``doc -> text`` (default: the files under the repository root).
  """
  read = read or _read
  texts, errors = claim_texts()
  tables, terr = _tables()
  errors += terr
  prose_all = {d: [b[1] for b in blocks(read(d)) if b[0] == "prose"]
               for d in docs}
  for c in R.CLAIMS:
    if c.id not in texts:
      continue
    for d in c.docs:
      if d in docs and not any(texts[c.id] in p for p in prose_all[d]):
        errors.append(f"{d}: claim {c.id} not found as recomputed: "
                      f"{texts[c.id]!r}")
  phrases = sorted(set(texts.values()), key=len, reverse=True)
  for d in docs:
    bl = blocks(read(d))
    if not any(b[3] for b in bl):
      errors.append(f"{d}: no checked region ({BEGIN} ... {END})")
    nd = [norm(p) for p in R.NON_DATA.get(d, ()) + R.NON_DATA["*"]]
    for kind, body, line, checked in bl:
      if not checked:
        continue
      if kind == "table":
        if body.strip() not in tables.values() and not any(
            body.strip().startswith(h) for h in R.EXEMPT):
          errors.append(f"{d}:{line}: table is not a generated table "
                        f"(or it differs from the data): "
                        f"{body.splitlines()[0][:80]}")
        continue
      spans = _spans(body, phrases) + _spans(body, nd)
      for m in NUMBER.finditer(body):
        if not any(a <= m.start() and m.end() <= b for a, b in spans):
          ctx = body[max(0, m.start() - 40):m.end() + 20]
          errors.append(f"{d}:{line}: number {m.group()!r} is backed by no "
                        f"claim: ...{ctx}...")
  found = {b[1] for d in docs for b in blocks(read(d)) if b[0] == "table"}
  for t in R.TABLES:
    if t.required and t.id in tables and tables[t.id] not in found:
      errors.append(f"table {t.id} not found as recomputed:\n{tables[t.id]}")
  return errors


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--list", action="store_true",
                 help="print every claim with its sources and text")
  a = p.parse_args()
  if a.list:
    texts, errors = claim_texts()
    for c in R.CLAIMS:
      print(f"{c.id} [{', '.join(c.sources)}]: {texts.get(c.id)}")
    print("\n".join(errors))
    return
  errors = check()
  print("\n".join(errors) if errors else
        f"{len(R.CLAIMS)} claims and {len(R.TABLES)} tables match the data")
  sys.exit(1 if errors else 0)


if __name__ == "__main__":
  np.seterr(all="ignore")
  main()
