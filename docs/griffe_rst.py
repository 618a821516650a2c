"""A griffe extension: the reST markup of the docstrings, as Markdown.

The docstrings follow the Google style (``Args:``, ``Returns:``) with reST
inline markup, as optax's and flax's do: ``:func:`x```, ``:math:`x```,
``.. math::`` blocks and ``Example::`` literal blocks. mkdocstrings renders
the docstrings as Markdown, so this extension rewrites those few constructs
before it does: cross-reference roles become code spans, ``:math:`x``` the
inline maths ``$x$`` and a ``.. math::`` block a ``$$`` block (both for
``pymdownx.arithmatex``; docs/hooks.py renders them as MathML when the
site is built), and a ``::`` block a fenced code block.
"""
import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):`([^`]+)`")
# an inline equation may run over a line break of the docstring
MATH = re.compile(r":math:`([^`]+)`")


def _indent(line):
  return len(line) - len(line.lstrip())


def _inline(text):
  """Roles of a run of ordinary lines (an equation over a line break is
  joined into its first line, so that it stays one line of Markdown)."""
  text = MATH.sub(lambda m: "$" + " ".join(m.group(1).split()) + "$", text)
  return ROLE.sub(r"`\1`", text)


def rst_to_markdown(text):
  """Rewrites reST roles, ``.. math::`` and ``::`` blocks as Markdown."""
  out, lines, i, run = [], text.split("\n"), 0, []

  def flush():
    if run:
      out.extend(_inline("\n".join(run)).split("\n"))
      run.clear()

  while i < len(lines):
    line = lines[i]
    stripped = line.strip()
    math = stripped == ".. math::"
    literal = not math and stripped.endswith("::") and not stripped.startswith("..")
    if not (math or literal):
      run.append(line)
      i += 1
      continue
    base = _indent(line)
    if literal:
      run.append(line.rstrip()[:-1])  # "Example::" -> "Example:"
      if run[-1].strip() == ":":
        run.pop()
    flush()
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
    if math:
      out.append(pad + "$$")
      out += [pad + l[cut:] for l in block if l.strip()]
      out.append(pad + "$$")
    else:
      out.append(pad + "```python")
      out += [pad + l[cut:] if l.strip() else "" for l in block]
      out.append(pad + "```")
    if j < len(lines):
      out.append("")
    i = j
  flush()
  return "\n".join(out)


class RstToMarkdown(griffe.Extension):
  """Converts every loaded docstring (see the module docstring)."""

  def on_object(self, *, obj, loader, **kwargs):  # noqa: D102
    del loader, kwargs
    if obj.docstring is not None:
      obj.docstring.value = rst_to_markdown(obj.docstring.value)
