"""RESULTS.md and README.md state no number the exported data does not
give: ``experiments/claims.py`` recomputes every claim and generated table
from ``experiments/results/`` (no training) and checks the prose."""
import pytest

from experiments import claims

pytest.importorskip("numpy")


def _docs():
  return {d: claims._read(d) for d in claims.DOCS}


def _check(docs):
  return claims.check(read=docs.__getitem__)


def test_every_claim_and_table_matches_the_data():
  errors = claims.check()
  assert not errors, "\n".join(errors)


def _changed(doc, old, new, count=1):
  docs = _docs()
  assert old in docs[doc], old
  docs[doc] = docs[doc].replace(old, new, count)
  return docs


def test_a_changed_claim_fails():
  errors = _check(_changed("RESULTS.md", "+0.28 [0.11, 0.45]",
                           "+0.29 [0.11, 0.45]"))
  assert any("claim paper.says.add_window not found" in e for e in errors)
  assert any("number '+0.29' is backed by no claim" in e for e in errors)


def test_a_number_without_claim_fails():
  errors = _check(_changed("RESULTS.md", "as fast as AdamW and as rescaling",
                           "as fast as AdamW (1.04x) and as rescaling"))
  assert errors == [e for e in errors if "'1.04'" in e] and len(errors) == 1


def test_numbers_outside_checked_regions_are_not_checked():
  errors = _check(_changed("RESULTS.md", "## Contents",
                           "7.77 is not checked.\n\n## Contents"))
  assert not errors


def test_the_archived_study_is_checked_on_its_page():
  """The CPU-size study moved to its archive page: its claims must appear
  there, and its prose and tables are checked as in RESULTS.md."""
  archive = claims.R.ARCHIVE
  assert archive in claims.DOCS
  errors = _check(_changed(archive, "20\nseeds, 189 s of training",
                           "20\nseeds, 190 s of training"))
  assert any(f"{archive}: claim wd.wall not found" in e for e in errors)
  assert any(e.startswith(f"{archive}:") and "'190'" in e for e in errors)
  errors = _check(_changed(archive, "| a+b | neuralgrok | 1400 | 1100-1500 |",
                           "| a+b | neuralgrok | 1500 | 1100-1500 |"))
  assert any("table cpu.main not found" in e for e in errors)
  # its claims are not looked for in RESULTS.md any more
  docs = _docs()
  docs["RESULTS.md"] = docs["RESULTS.md"] + "\n" + docs[archive]
  docs[archive] = docs[archive].replace("189 s of training", "")
  assert any(f"{archive}: claim wd.wall" in e for e in _check(docs))


def test_the_summary_table_is_generated():
  errors = _check(_changed("RESULTS.md", "Muon 1.55x, 1.60x, 2.12x;",
                           "Muon 1.56x, 1.60x, 2.12x;"))
  assert any("table summary.headline not found" in e for e in errors)


def test_a_changed_table_cell_fails():
  errors = _check(_changed("RESULTS.md", "| 1800 (stopped early) | 485.5 |",
                           "| 1800 (stopped early) | 485.6 |"))
  assert any("table is not a generated table" in e for e in errors)
  assert any("table paper.table1 not found" in e for e in errors)


def test_readme_claims_may_move_or_go_but_not_change():
  docs = _docs()
  text = docs["README.md"]
  a, b = text.index(claims.BEGIN), text.index(claims.END) + len(claims.END)
  region = text[a:b]
  moved = text[:a] + text[b:]
  docs["README.md"] = region + "\n\n" + moved  # moved to the top
  assert not _check(docs)
  # shortened to one claim of the region, still checked
  docs["README.md"] = (f"{claims.BEGIN}\nNeuralGrok needed 2.53x and 2.09x "
                       f"fewer steps.\n{claims.END}\n")
  assert not _check(docs)
  docs["README.md"] = docs["README.md"].replace("2.09x", "2.1x")
  assert any("'2.1'" in e for e in _check(docs))
  docs["README.md"] = "no checked region\n"
  assert any("README.md: no checked region" in e for e in _check(docs))


def test_blocks_of_markdown():
  text = ("a 1\nb 2\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```\n3\n```\n"
          f"{claims.BEGIN}\n- item `--flag 4` [l](u5.md)\n1. two\n"
          f"{claims.CONFIG}\nlr 3e-3\n\nx 5\n"
          f"{claims.END}\n1100. not a list (Lee et al. 2024)\n")
  bl = claims.blocks(text)
  assert [(k, b, c) for k, b, _, c in bl] == [
      ("prose", "a 1 b 2", False),
      ("table", "| x | y |\n| --- | --- |\n| 1 | 2 |", False),
      ("prose", "- item [l]", True), ("prose", "two", True),
      ("prose", "lr 3e-3", False), ("prose", "x 5", True),
      ("prose", "1100. not a list (Lee et al.)", False)]


def test_amplifier_claims_fail_when_changed():
  errors = _check(_changed("RESULTS.md", "| 9.90e-05 |", "| 9.91e-05 |"))
  assert any("table paper.amplifier_vs_rescale not found" in e
             for e in errors)
  errors = _check(_changed("RESULTS.md", "within 2e-4 (relative",
                           "within 1e-4 (relative"))
  assert any("claim paper.amp.within not found" in e for e in errors)
  errors = _check(_changed("RESULTS.md", "spans 0.029 over", "spans 0.03 over"))
  assert any("claim learned_part.scores not found" in e for e in errors)
  assert any("number '0.03' is backed by no claim" in e for e in errors)


@pytest.mark.slow  # each seed's transformer gradient at d 128: minutes on CPU
def test_amplifier_vs_rescale_json_regenerates(tmp_path, monkeypatch):
  """The exported ``amplifier_vs_rescale.json`` (what the fast check ties
  RESULTS.md's table to) is what the script computes from the exported
  run folders."""
  import json
  import os
  import numpy as np
  from experiments import amplifier_vs_rescale as avr
  path = os.path.join(claims.ROOT,
                      "experiments/results/paper/amplifier_vs_rescale.json")
  with open(path) as f:
    old = json.load(f)
  monkeypatch.chdir(claims.ROOT)  # the folders are relative to the root
  out = str(tmp_path / "avr.json")
  avr.main([s["folder"] for s in old["runs"]] + ["--json", out])
  with open(out) as f:
    new = json.load(f)
  assert new["command"].split(" --json")[0] == old["command"].split(
      " --json")[0]
  assert avr.table(new["runs"]) == avr.table(old["runs"])  # the cells stated
  for a, b in zip(old["runs"], new["runs"]):
    assert [r["seed"] for r in a["per_seed"]] == [
        r["seed"] for r in b["per_seed"]]
    for k in ("init", "learned"):
      np.testing.assert_allclose([r[k] for r in a["per_seed"]],
                                 [r[k] for r in b["per_seed"]], rtol=1e-3)
