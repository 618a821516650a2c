"""MkDocs hooks: the repository's own Markdown, rendered in the site.

RESULTS.md and BENCHMARK.md live at the repository root (where GitHub shows
them) but are pages of the site too. Links are written so that they work on
GitHub, relative to the file that holds them (``../RESULTS.md`` from a page
in docs/, ``docs/REFERENCE.md`` from RESULTS.md); this hook maps every such
link to its place in the site, and copies each repository file a page links
to (a plot, a notebook, a source file) into the site at the same path, so
that ``mkdocs build --strict`` checks every link, including those.

Maths (``$...$`` and ``$$`` blocks in pages, ``:math:`` and ``.. math::``
in docstrings, see docs/griffe_rst.py) leaves Markdown as the LaTeX of
``pymdownx.arithmatex`` (generic mode); this hook renders it as MathML,
which browsers show without any script, so the site loads no maths library
and fetches nothing.
"""
import html
import os
import posixpath
import re
from urllib.parse import quote, unquote, urlsplit

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_PAGES = ("RESULTS.md", "BENCHMARK.md")
MATH = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]'
                  r'\s*</\1>', re.S)
LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")


def _repo_dir(src_uri):
  """The repository folder of a site page (root pages sit at the root)."""
  if src_uri in ROOT_PAGES:
    return ""
  return posixpath.dirname(posixpath.join("docs", src_uri))


def _site_uri(repo_path):
  """Where a repository file is in the site."""
  if repo_path.startswith("docs/"):
    return repo_path[len("docs/"):]
  return repo_path


def _targets(src_uri, text):
  """(match, repository path) of every relative link of a page."""
  for m in LINK.finditer(text):
    url = urlsplit(m.group(2))
    if url.scheme or url.netloc or not url.path:
      continue
    path = posixpath.normpath(posixpath.join(_repo_dir(src_uri),
                                             unquote(url.path)))
    yield m, url, path


def _source(src_uri):
  if src_uri in ROOT_PAGES:
    return os.path.join(ROOT, src_uri)
  return os.path.join(ROOT, "docs", src_uri)


def on_files(files, config):
  """Add the root pages and the repository files the pages link to."""
  for name in ROOT_PAGES:
    files.append(File.generated(config, name,
                                abs_src_path=os.path.join(ROOT, name)))
  pages = [f.src_uri for f in files if f.src_uri.endswith(".md")]
  for src_uri in pages:
    with open(_source(src_uri), encoding="utf-8") as fh:
      text = fh.read()
    for _, _, path in _targets(src_uri, text):
      full = os.path.join(ROOT, path)
      if (path.startswith("docs/") or path.startswith("..")
          or not os.path.isfile(full) or files.get_file_from_path(path)):
        continue
      files.append(File.generated(config, path, abs_src_path=full))
  return files


def on_page_markdown(markdown, page, config, files):
  """Rewrite each link from its repository path to its site path."""
  src_uri = page.file.src_uri
  page_dir = posixpath.dirname(src_uri)
  out, last = [], 0
  for m, url, path in _targets(src_uri, markdown):
    site = _site_uri(path)
    if files.get_file_from_path(site) is None:
      continue  # not a file of the site: mkdocs reports it
    rel = posixpath.relpath(site, page_dir or ".")
    new = quote(rel, safe="/+-_.~") + (f"#{url.fragment}" if url.fragment
                                       else "")
    out.append(markdown[last:m.start(2)] + new)
    last = m.end(2)
  out.append(markdown[last:])
  markdown = "".join(out)
  if src_uri in ROOT_PAGES or src_uri.startswith("archive/"):
    # a pytree path such as ['params']['fc'] in prose is not a reference link
    # (the results pages' tables; the archive holds a study moved out of
    # RESULTS.md)
    markdown = markdown.replace("]['", "]\\['")
  return markdown


def render_math(content, where="<page>"):
  """The arithmatex elements of a page's HTML, as MathML."""
  def mathml(m):
    tag, latex = m.group(1), html.unescape(m.group(3)).strip()
    display = "block" if m.group(2) == "[" else "inline"
    try:
      rendered = latex_to_mathml(latex, display=display)
    except Exception as e:  # noqa: BLE001 (any failure is the page's error)
      raise PluginError(f"{where}: cannot render the maths {latex!r}: "
                        f"{type(e).__name__}: {e}") from e
    return f'<{tag} class="arithmatex">{rendered}</{tag}>'
  return MATH.sub(mathml, content)


def on_page_content(html_text, page, config, files):
  """Render the page's maths (see the module docstring)."""
  del config, files
  return render_math(html_text, page.file.src_uri)
