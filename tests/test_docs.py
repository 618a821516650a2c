"""The documentation: the site builds with warnings as errors, and every
code block of README.md and docs/*.md runs, or says why it is not run.

Convention (docs/index.md, "Code blocks are tests"): every fenced block has
a language. ``python`` blocks of one file run in order in one namespace,
``bash`` blocks each with ``bash -e``, all in a temporary folder. A block
that must not run has ``<!-- not-run: REASON -->`` on the line(s) right
before its fence (other HTML comments may sit between the two).
"""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
PYTHON = ("python", "py")
SHELL = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)")
COMMENT = re.compile(r"^\s*<!--(.*?)-->\s*$")
NOT_RUN = re.compile(r"^\s*not-run\b\s*:?\s*(.*)$", re.S)
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+", re.I)


class Block:
  def __init__(self, path, line, lang, code, comments):
    self.path, self.line, self.lang, self.code = path, line, lang, code
    self.comments = comments

  @property
  def where(self):
    return f"{self.path.name}:{self.line}"

  def not_run_reason(self):
    """The reason of its not-run marker, or None if the block is unmarked
    (a marker without a reason is an error)."""
    for c in self.comments:
      m = NOT_RUN.match(c)
      if m:
        reason = m.group(1).strip()
        if not reason:
          raise AssertionError(f"{self.where}: not-run marker without a reason")
        return reason
    return None


def code_blocks(text, path=pathlib.Path("<text>")):
  """The fenced code blocks of a Markdown text, with the HTML comments on
  the lines right before each fence."""
  lines = text.split("\n")
  blocks, i = [], 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
    comments, j = [], i - 1
    while j >= 0 and (COMMENT.match(lines[j]) or not lines[j].strip()):
      if lines[j].strip():
        comments.append(COMMENT.match(lines[j]).group(1))
      elif comments:
        break
      j -= 1
    end = i + 1
    while end < len(lines) and not (
        lines[end].strip().startswith(fence[0] * len(fence))
        and lines[end].strip().strip(fence[0]) == ""):
      end += 1
    if end == len(lines):
      raise AssertionError(f"{path.name}:{i + 1}: code block never closed")
    body = "\n".join(l[len(indent):] if l.startswith(indent) else l
                     for l in lines[i + 1:end])
    blocks.append(Block(path, i + 1, lang, textwrap.dedent(body) + "\n",
                        comments))
    i = end + 1
  return blocks


def run_blocks(blocks, cwd):
  """Runs the blocks of one file; returns the (where, reason) of those not
  run."""
  namespace, skipped = {"__name__": "__docs__"}, []
  for b in blocks:
    if b.lang not in PYTHON + SHELL:
      continue
    reason = b.not_run_reason()
    if reason is not None:
      skipped.append((b.where, reason))
      continue
    if b.lang in PYTHON:
      old = os.getcwd()
      os.chdir(cwd)
      try:
        exec(compile(b.code, b.where, "exec"), namespace)  # noqa: S102
      finally:
        os.chdir(old)
    else:
      r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b.code],
                         cwd=cwd, capture_output=True, text=True, timeout=300,
                         check=False)
      assert r.returncode == 0, f"{b.where} failed:\n{r.stdout}\n{r.stderr}"
  return skipped


def test_the_block_convention_itself(tmp_path):
  text = textwrap.dedent("""\
      ```python
      x = 1
      ```

      <!-- not-run: would fail -->
      <!-- another-marker -->
      ```python
      raise SystemExit("run")
      ```

      1. In a list:

         ```python
         y = x + 1
         ```

      ```bash
      test "$(echo hi)" = hi
      ```

      ```text
      not code
      ```
      """)
  blocks = code_blocks(text)
  assert [b.lang for b in blocks] == ["python", "python", "python", "bash",
                                      "text"]
  assert run_blocks(blocks, tmp_path) == [("<text>:7", "would fail")]
  # an unmarked failing block fails; a marker needs a reason
  with pytest.raises(SystemExit):
    run_blocks(code_blocks("```python\nraise SystemExit(1)\n```\n"), tmp_path)
  with pytest.raises(AssertionError, match="without a reason"):
    run_blocks(code_blocks("<!-- not-run -->\n```python\n1\n```\n"), tmp_path)
  with pytest.raises(AssertionError, match="failed"):
    run_blocks(code_blocks("```bash\nfalse\n```\n"), tmp_path)
  # a marker separated from the fence by text does not count
  far = code_blocks("<!-- not-run: x -->\ntext\n```python\n1\n```\n")
  assert far[0].not_run_reason() is None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_runs_or_says_why_not(page, tmp_path):
  blocks = code_blocks(page.read_text(encoding="utf-8"), page)
  untagged = [b.where for b in blocks if not b.lang]
  assert not untagged, f"code blocks without a language: {untagged}"
  from ngrok_jax import registry
  before = registry.method_names()
  try:
    run_blocks(blocks, tmp_path)
  finally:  # a page's own optimizer (register_method) leaves with the page
    for name in registry.method_names():
      if name not in before:
        registry.unregister(name)


def test_the_readme_api_example_is_the_one_the_docs_run():
  readme = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
  docs = code_blocks((ROOT / "docs" / "transforms.md").read_text(
      encoding="utf-8"))
  example = [b for b in readme
             if any("neuralgrok-snippet" in c for c in b.comments)]
  assert len(example) == 1 and example[0].not_run_reason()
  assert docs[0].not_run_reason() is None
  assert example[0].code == docs[0].code


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """The site, built once (``mkdocs build --strict``) for the tests below."""
  site = tmp_path_factory.mktemp("docs") / "site"
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                      "--site-dir", str(site)], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stdout + r.stderr
  return site


def test_docs_build_strict_and_the_readme_reaches_them(site):
  # the API page of neuralgrok, rendered from its docstring
  api = (site / "api" / "neuralgrok" / "index.html").read_text()
  assert 'id="ngrok_jax.neuralgrok"' in api
  assert "meta_every" in api and "Returns" in api
  # RESULTS.md and BENCHMARK.md are pages too
  assert (site / "RESULTS" / "index.html").is_file()
  assert (site / "BENCHMARK" / "index.html").is_file()
  # no page of the site, docstrings included, cites an issue number
  cited = [(str(p.relative_to(site)), m.group(0))
           for p in site.rglob("*.html")
           for m in ISSUE_NUMBER.finditer(p.read_text(encoding="utf-8"))]
  assert not cited, cited

  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  assert len(readme.splitlines()) <= 250
  assert not ISSUE_NUMBER.search(readme)
  links = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme)
  assert "docs/getting-started.md" in links  # install and a trained model
  assert "docs/api/neuralgrok.md" in links   # the API page of neuralgrok
  missing = [l for l in links if "://" not in l and not (ROOT / l).exists()]
  assert not missing, missing
  # anchors of the README's links into the docs exist in the built pages
  for page, frag in re.findall(r"\]\(docs/([^)#\s]+)\.md#([^)\s]+)\)", readme):
    html = (site / page / "index.html").read_text(encoding="utf-8")
    assert f'id="{frag}"' in html, f"docs/{page}.md#{frag}"


# LaTeX left as text: a control word (\\frac, \\theta; one-letter escapes
# such as \\n in code are not LaTeX), a reST role, a maths delimiter
RAW_LATEX = re.compile(r"\\[A-Za-z]{2,}|:math:|\$\$|\\\(|\\\[|\\begin\{")
# $x$ in prose (outside code), e.g. from a page if arithmatex were not on
DOLLAR_MATH = re.compile(r"(?<![\w$])\$[^\s$<][^$\n<]{0,80}?(?<!\s)\$(?![\w$])")
HTML_LINK = re.compile(r"\b(?:href|src)=\"([^\"]*)\"")
HTML_ID = re.compile(r"\bid=\"([^\"]*)\"")


def _strip(html, *tags):
  for tag in tags:
    html = re.sub(rf"<{tag}\b.*?</{tag}>", "", html, flags=re.S)
  return html


def site_maths_problems(site):
  """(page, what) for maths that a browser would show as LaTeX source."""
  problems = []
  for page in sorted(site.rglob("*.html")):
    text = page.read_text(encoding="utf-8")
    name = str(page.relative_to(site))
    outside = _strip(text, "math", "script")
    problems += [(name, m.group(0)) for m in RAW_LATEX.finditer(outside)]
    prose = _strip(outside, "pre", "code")
    problems += [(name, m.group(0)) for m in DOLLAR_MATH.finditer(prose)]
    problems += [(name, "<merror>") for _ in re.finditer("<merror", text)]
    for m in re.finditer(r'class="arithmatex">(?!<math)', text):
      problems.append((name, text[m.start():m.start() + 60]))
  return problems


def site_broken_links(site):
  """(page, link) for every relative link or image of the site's pages
  that points to no file of the site, or to an anchor its page lacks
  (root-relative links, as in 404.html, from the site's root)."""
  import html as html_lib
  from urllib.parse import unquote, urlsplit
  ids, broken = {}, []
  for page in sorted(site.rglob("*.html")):
    name = str(page.relative_to(site))
    for raw in HTML_LINK.findall(page.read_text(encoding="utf-8")):
      url = urlsplit(html_lib.unescape(raw))
      if url.scheme or url.netloc:
        continue
      target = page
      if url.path:
        base = "" if url.path.startswith("/") else str(
            page.parent.relative_to(site))
        rel = os.path.normpath(os.path.join(base, unquote(url.path).lstrip("/")))
        target = site / rel
        if target.is_dir():
          target = target / "index.html"
        if rel.startswith("..") or not target.is_file():
          broken.append((name, raw))
          continue
      if url.fragment and target.suffix == ".html":
        if target not in ids:
          ids[target] = set(HTML_ID.findall(target.read_text(encoding="utf-8")))
        if unquote(url.fragment) not in ids[target]:
          broken.append((name, raw))
  return broken


def test_site_checks_catch_raw_maths_and_broken_links(tmp_path):
  page = tmp_path / "p" / "index.html"
  page.parent.mkdir()
  (tmp_path / "index.html").write_text('<h1 id="top">x</h1>')
  page.write_text(
      '<p>ok <span class="arithmatex"><math><mi>\\theta</mi></math></span>'
      ' <code>echo "$HOME" \\n</code> costs $5 and $6</p>'
      '<a href="../">up</a> <a href="../#top">t</a> <a href="/index.html">r</a>'
      '<a href="https://example.org/x">e</a>')
  assert site_maths_problems(tmp_path) == []
  assert site_broken_links(tmp_path) == []
  for bad in ("<pre><code>\\mathrm{softmax}(g)</code></pre>",
              "<p>see :math:`g`</p>", "<p>then $g_t$ grows</p>",
              '<span class="arithmatex">\\(g\\)</span>'):
    page.write_text(bad)
    assert site_maths_problems(tmp_path), bad
  for bad in ('<a href="../experiments/results/cpu/">x</a>',
              '<a href="../#nowhere">x</a>', '<img src="../../up.png">'):
    page.write_text(bad)
    assert site_broken_links(tmp_path), bad


def test_site_shows_maths_rendered_and_has_no_broken_link(site):
  assert site_maths_problems(site) == []
  assert site_broken_links(site) == []
  # the docstrings' maths is there, as MathML, inline and as blocks
  api = (site / "api" / "neuralgrok" / "index.html").read_text()
  assert api.count('<math xmlns="http://www.w3.org/1998/Math/MathML" '
                   'display="block"') >= 3
  assert api.count('display="inline"') >= 10
  # and the pages' own ($...$, $$ blocks)
  home = (site / "index.html").read_text()
  assert 'display="block"' in home and home.count('display="inline"') >= 4
  # the site loads no maths script (nothing fetched: MathML needs none)
  assert not re.search(r"mathjax|katex", api, re.I)


def test_api_pages_are_readable(site):
  import ngrok_jax
  pages = {p.parent.name: p.read_text(encoding="utf-8")
           for p in (site / "api").glob("*/index.html")}
  assert {"neuralgrok", "transforms", "tasks"} <= set(pages)
  # signatures across lines: one parameter a line
  api = pages["neuralgrok"]
  sig = re.search(r'<div class="doc-signature highlight">.*?</code>', api,
                  re.S).group(0)
  assert sig.count("\n") >= 8 and re.search(r"\n\s*<span[^>]*>meta_every<",
                                             sig), sig[:400]
  # a Returns section is one entry
  for name, text in pages.items():
    for sec in re.findall(r'doc-section-title">Returns:</span>.*?</ul>', text,
                          re.S):
      assert sec.count("<li") == 1, (name, sec[:600])
  assert pages["neuralgrok"].count('doc-section-title">Returns:') >= 1
  # parameters are a list (a table's Default column fell off the page)
  assert 'doc-section-title">Parameters:' in api
  assert "<th>Default</th>" not in api
  # no page of the reference opens with the package's own docstring
  first = ngrok_jax.__doc__.split("\n")[0]
  for name, text in pages.items():
    assert first not in text, name
    assert "docs/layout.md" not in _strip(text, "a"), name


def test_command_line_help_cites_no_issue_number():
  from ngrok_jax._src.cli import cli
  parser = cli.build_parser()
  texts = [parser.format_help()]
  for action in parser._actions:  # noqa: SLF001 (argparse has no public API)
    for sub in getattr(action, "choices", None) or {}:
      if hasattr(action.choices[sub], "format_help"):
        texts.append(action.choices[sub].format_help())
  cited = [m.group(0) for t in texts for m in ISSUE_NUMBER.finditer(t)]
  assert len(texts) > 3 and not cited, cited


def test_rst_markup_of_docstrings_becomes_markdown():
  sys.path.insert(0, str(ROOT / "docs"))
  try:
    from griffe_rst import rst_to_markdown
  finally:
    sys.path.remove(str(ROOT / "docs"))
  text = textwrap.dedent("""\
      Uses :func:`amplify` and :math:`g_t`.

      .. math::
          g' = c\\, g

      Example::

          tx = f(1)

      Args:
        x: see :class:`Amplifier`, :math:`\\frac{1}{n}
          \\sum_i L_i` over tasks.""")
  assert rst_to_markdown(text) == textwrap.dedent("""\
      Uses `amplify` and $g_t$.

      $$
      g' = c\\, g
      $$

      Example:

      ```python
      tx = f(1)
      ```

      Args:
        x: see `Amplifier`, $\\frac{1}{n} \\sum_i L_i$ over tasks.""")


def _documented_names():
  """``ngrok_jax.__all__``, every object the API pages render, and the
  public names (``__all__``) of every module they render from."""
  import importlib
  import ngrok_jax
  names = {f"ngrok_jax.{n}" for n in ngrok_jax.__all__}
  for page in sorted((ROOT / "docs" / "api").glob("*.md")):
    text = page.read_text(encoding="utf-8")
    for m in re.finditer(r"^::: (\S+)\n((?:    .*\n|[ \t]*\n)*)", text, re.M):
      members = re.findall(r"^        - (\w+)", m.group(2), re.M)
      names.update([f"{m.group(1)}.{n}" for n in members] or [m.group(1)])
      module = m.group(1)
      while module:
        try:
          mod = importlib.import_module(module)
          break
        except ImportError:
          module = module.rpartition(".")[0]
      names.update(f"{module}.{n}" for n in getattr(mod, "__all__", ()))
  return sorted(names)


def _resolve(dotted):
  import importlib
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    for p in parts[i:]:
      obj = getattr(obj, p)
    return obj
  raise AssertionError(f"cannot import {dotted}")


def _returns_value(fn):
  import ast
  import inspect
  tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
  nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

  def walk(node):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, ast.Return) and child.value is not None:
        return True
      if not isinstance(child, nested) and walk(child):
        return True
    return False
  return walk(tree)


def test_public_functions_have_args_and_returns_sections():
  import inspect
  missing, seen = [], set()
  for name in _documented_names():
    obj = _resolve(name)
    if inspect.isclass(obj):
      fns = [(f"{name}.{k}", getattr(v, "__func__", v))
             for k, v in vars(obj).items() if not k.startswith("_")
             and inspect.isfunction(getattr(v, "__func__", v))]
    else:
      fns = [(name, obj)] if inspect.isfunction(obj) else []
    for qual, fn in fns:
      if fn in seen:
        continue
      seen.add(fn)
      doc = inspect.getdoc(fn) or ""
      params = [p for p in inspect.signature(fn).parameters
                if p not in ("self", "cls")]
      if params and "Args:" not in doc:
        missing.append(f"{qual}: Args")
      if _returns_value(fn) and "Returns:" not in doc:
        missing.append(f"{qual}: Returns")
  assert len(seen) > 90 and not missing, missing


def test_the_readme_main_job_is_a_fair_demo_with_its_figure():
  """The README's main job runs the quick preset's methods (NeuralGrok, the
  rescaling ablation, Adam), says in a line what each is, and shows the
  accuracy figure the job writes (committed under docs/img)."""
  from ngrok_jax._src.training.presets import get_preset
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  main = [b for b in code_blocks(readme)
          if "ngrok-jax train --preset quick" in b.code
          and "--out runs/quick" in b.code]
  assert len(main) == 1
  methods = re.search(r"--methods (\S+)", main[0].code).group(1).split(",")
  assert methods == get_preset("quick")["methods"] == [
      "neuralgrok", "rescale", "adam"]
  for m in methods:
    assert re.search(rf"^- `{m}`: \S", readme, re.M), m
  fig = re.search(r"!\[[^\]]+\]\((docs/img/[^)]+\.png)\)", readme)
  assert fig, "the README shows no figure"
  png = (ROOT / fig.group(1)).read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
