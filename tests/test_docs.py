"""The documentation site and the README: every public name of the eight subpackages
has an API entry, every entry names something that exists, no public docstring points
to a private name, the README is a landing page whose links work off the repository,
and every page the navigation or a link names exists. (`mkdocs build --strict` checks
the rendering itself; CI runs it.)"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SUBPACKAGES = (
    "optimizers",
    "training",
    "callbacks",
    "layers",
    "regularizers",
    "diagnostics",
    "data",
    "experiments",
)
DIRECTIVE = re.compile(r"^::: (keras_optnotes(?:\.\w+)+)\s*$", re.MULTILINE)
# A private component of a dotted name or a path (`callbacks._logs`,
# `diagnostics/_backend`), or a backticked name that starts with one underscore.
PRIVATE = re.compile(r"[./]_[A-Za-z]\w*|`_[A-Za-z]\w*")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def site_url() -> str:
    match = re.search(
        r"^site_url:\s*(\S+)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M
    )
    assert match, "mkdocs.yml sets no site_url"
    return match.group(1).rstrip("/") + "/"


def api_directives() -> list[str]:
    return [
        name
        for page in sorted((DOCS / "api").glob("*.md"))
        for name in DIRECTIVE.findall(page.read_text())
    ]


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_every_public_name_has_an_api_entry(subpackage):
    module = importlib.import_module(f"keras_optnotes.{subpackage}")
    assert "__all__" in vars(module), f"keras_optnotes.{subpackage} has no __all__"
    public = list(module.__all__)
    assert len(public) == len(set(public)), f"{subpackage}.__all__ repeats a name"
    for name in public:
        assert hasattr(module, name), f"{subpackage}.__all__ names missing {name!r}"
    page = (DOCS / "api" / f"{subpackage}.md").read_text()
    documented = set(DIRECTIVE.findall(page))
    missing = [
        n for n in public if f"keras_optnotes.{subpackage}.{n}" not in documented
    ]
    assert not missing, f"docs/api/{subpackage}.md lacks entries for {missing}"


def resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(dotted)


def test_every_api_entry_names_something_public_that_exists():
    directives = api_directives()
    assert len(directives) >= 60  # the reference is not empty
    for dotted in directives:
        resolve(dotted)  # raises if the name is gone
        assert not any(part.startswith("_") for part in dotted.split(".")), dotted


def public_docstrings():
    """(qualified name, docstring) of every public object of the subpackages, their
    public methods and properties, and the subpackages themselves."""
    for subpackage in SUBPACKAGES:
        module = importlib.import_module(f"keras_optnotes.{subpackage}")
        yield f"keras_optnotes.{subpackage}", module.__doc__ or ""
        for name in getattr(module, "__all__", ()):
            target = getattr(module, name)
            if not (inspect.isclass(target) or callable(target)):
                continue
            yield f"{subpackage}.{name}", inspect.getdoc(target) or ""
            if not inspect.isclass(target):
                continue
            for member, value in vars(target).items():
                if member.startswith("_") and member != "__init__":
                    continue
                doc = value.__doc__ if isinstance(value, property) else None
                if doc is None and callable(value):
                    doc = inspect.getdoc(value)
                yield f"{subpackage}.{name}.{member}", doc or ""


def test_no_public_docstring_points_to_a_private_name():
    offenders = {name: PRIVATE.findall(doc) for name, doc in public_docstrings() if doc}
    offenders = {name: hits for name, hits in offenders.items() if hits}
    assert not offenders, f"public docstrings that name private things: {offenders}"


def test_readme_is_a_landing_page_of_at_most_10_kb():
    assert len(README.read_bytes()) <= 10 * 1024


def test_readme_keeps_the_two_quick_start_commands():
    text = README.read_text()
    assert 'pip install ".[all,tensorflow]" && keras-optnotes compare' in text
    assert 'pip install ".[test]" && python -m pytest' in text


def docs_page_of(url: str, base: str) -> Path:
    """The Markdown file that the site builds at `url` (MkDocs' directory URLs)."""
    path = url[len(base) :].split("#")[0]
    if path in ("", "/"):
        return DOCS / "index.md"
    if not path.endswith("/"):  # a file copied as is, e.g. an image
        return DOCS / path
    # a page from x.md or x.ipynb (a notebook), or a folder's index.md / README.md
    stem = path.rstrip("/")
    candidates = [
        f"{stem}.md",
        f"{stem}.ipynb",
        f"{stem}/index.md",
        f"{stem}/README.md",
    ]
    return next(
        (DOCS / c for c in candidates if (DOCS / c).is_file()), DOCS / candidates[0]
    )


def test_readme_links_are_absolute_and_name_existing_pages():
    text = README.read_text()
    base = site_url()
    links = MARKDOWN_LINK.findall(text) + re.findall(r"(?:href|src)=\"([^\"]+)\"", text)
    assert links, "the README links to no documentation"
    for link in links:
        assert link.startswith("https://"), f"relative or non-https link: {link}"
        if link.startswith(base):
            page = docs_page_of(link, base)
            assert page.is_file(), (
                f"{link} would not exist: no {page.relative_to(ROOT)}"
            )


def nav_pages() -> list[str]:
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    return re.findall(r":\s*([\w./-]+\.(?:md|ipynb))\s*$", nav, re.MULTILINE)


def test_every_nav_entry_and_relative_link_of_the_docs_exists():
    pages = nav_pages()
    assert "index.md" in pages and len(pages) == len(set(pages))
    for page in pages:
        assert (DOCS / page).is_file(), f"mkdocs.yml's nav names missing {page}"
    for source in DOCS.rglob("*.md"):
        for link in MARKDOWN_LINK.findall(source.read_text()):
            if re.match(r"[a-z]+:", link) or link.startswith("#"):
                continue  # an external link or an anchor on the same page
            target = (source.parent / link.split("#")[0]).resolve()
            where = source.relative_to(ROOT)
            assert target.is_file(), f"{where} links to missing {link}"
