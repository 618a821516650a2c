"""A griffe extension: the reST markup of the docstrings, as Markdown.

The docstrings follow the Google style (``Args:``, ``Returns:``) with reST
inline markup, as optax's and flax's do: ``:func:`x```, ``:math:`x```,
``.. math::`` blocks and ``Example::`` literal blocks. mkdocstrings renders
the docstrings as Markdown, so this extension rewrites those few constructs
before it does: roles become code spans, and a ``.. math::`` or ``::``
block becomes a fenced code block (equations are shown as LaTeX source;
the site loads no math renderer, so it needs no network).
"""
import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|math):`([^`]+)`")


def _indent(line):
  return len(line) - len(line.lstrip())


def rst_to_markdown(text):
  """Rewrites reST roles, ``.. math::`` and ``::`` blocks as Markdown."""
  out, lines, i = [], text.split("\n"), 0
  while i < len(lines):
    line = lines[i]
    stripped = line.strip()
    math = stripped == ".. math::"
    literal = not math and stripped.endswith("::") and not stripped.startswith("..")
    if not (math or literal):
      out.append(ROLE.sub(r"`\1`", line))
      i += 1
      continue
    base = _indent(line)
    if literal:
      text_part = ROLE.sub(r"`\1`", line.rstrip()[:-1])  # "Example::" -> "Example:"
      if text_part.strip() != ":":
        out.append(text_part)
    j = i + 1
    block = []
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
      block.append(lines[j])
      j += 1
    while block and not block[-1].strip():
      block.pop()
    while block and not block[0].strip():
      block.pop(0)
    if not block:  # a "::" with nothing indented after it
      i += 1
      continue
    cut = min(_indent(l) for l in block if l.strip())
    pad = " " * base
    if out and out[-1].strip():
      out.append("")
    out.append(pad + ("```text" if math else "```python"))
    out += [pad + l[cut:] if l.strip() else "" for l in block]
    out.append(pad + "```")
    if j < len(lines):
      out.append("")
    i = j
  return "\n".join(out)


class RstToMarkdown(griffe.Extension):
  """Converts every loaded docstring (see the module docstring)."""

  def on_object(self, *, obj, loader, **kwargs):  # noqa: D102
    del loader, kwargs
    if obj.docstring is not None:
      obj.docstring.value = rst_to_markdown(obj.docstring.value)
