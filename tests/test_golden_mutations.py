"""The golden tests' mutation list (``tests/golden/mutations.py``) stays
applicable: every mutation's old text occurs exactly once in the current
source, so a refactor that moves the code makes this fail instead of
silently turning a mutation into a no-op."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mutations():
  spec = importlib.util.spec_from_file_location(
      "golden_mutations", os.path.join(ROOT, "tests", "golden", "mutations.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.MUTATIONS


def test_every_mutation_applies_to_the_current_source():
  muts = _mutations()
  assert len(muts) >= 10
  for name, edits in muts.items():
    for path, old, new in edits:
      with open(os.path.join(ROOT, path)) as f:
        text = f.read()
      assert text.count(old) == 1, (name, path, text.count(old))
      assert old != new, name
