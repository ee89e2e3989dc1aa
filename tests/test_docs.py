"""The README as a landing page, links that resolve, references generated from the code, and the
documentation site built strict (no Ray)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import wsss

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
GENERATED = {"reference/config.md", "reference/cli.md"}  # made by docs/hooks/reference.py at build time


def _reference_hook():
    spec = importlib.util.spec_from_file_location("reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where links and headings live)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (GitHub's rule, duplicates numbered)."""
    seen: dict[str, int] = {}
    found = set()
    for line in _outside_fences(path.read_text()):
        match = re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if match:
            slug = github_slug(match.group(1))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", _prose(path.read_text()))
    return [target for target in targets if not re.match(r"^[a-z]+:", target)]


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` whose file, or whose heading in a markdown file, is missing."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        generated = resolved.is_relative_to(DOCS) and resolved.relative_to(DOCS).as_posix() in GENERATED
        if generated:
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return broken


def test_readme_is_a_landing_page_with_a_table_of_contents():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, len(text.splitlines())
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(entries) >= 4, contents
    assert set(entries) <= anchors(README), set(entries) - anchors(README)
    headings = {github_slug(line[3:]) for line in _outside_fences(text) if line.startswith("## ")}
    assert headings - {"contents"} <= set(entries), headings - set(entries)  # every section is listed
    assert "make test" in text and "make demo" in text


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    broken = {str(page.relative_to(ROOT)): broken_links(page) for page in pages}
    assert not {page: links for page, links in broken.items() if links}
    assert any("docs/" in target for target in relative_links(README))


def test_the_readme_names_every_verb():
    from wsss.cli.main import build_parser

    verbs = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    text = README.read_text()
    assert [verb for verb in verbs.choices if f"`wsss {verb}" not in text] == []


def _models(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """Every pydantic model reachable from ``model`` through its fields' types."""
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _models(annotation, seen)
            stack += list(typing.get_args(annotation))
    return seen


def _sections(page: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading."""
    parts = re.split(r"^#{1,6} (.+)$", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_config_reference_names_every_field_of_every_model():
    from wsss.config import StudyConfig
    from wsss.labelers.registry import get_labeler_class, list_labelers

    page = _reference_hook().config_reference()
    models = _models(StudyConfig, [])
    assert {"DataConfig", "TrainConfig", "SweepConfig", "TrialSpec", "ScheduleStep"} <= {m.__name__ for m in models}
    blocks = [text for heading, text in _sections(page).items() if heading.startswith("`")]
    missing = [f"{model.__name__}.{name}" for model in models for name in model.model_fields
               if not any(f"*{model.__name__}*" in text and f"| `{name}` |" in text for text in blocks)]
    assert missing == []
    sections = _sections(page)
    for labeler in list_labelers():
        block = sections[f"`{labeler}`"]
        params = get_labeler_class(labeler).Params.model_fields
        assert [name for name in params if f"| `{name}` |" not in block] == [], labeler


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def test_the_cli_reference_names_every_subcommand_and_option():
    from wsss.cli.main import build_parser

    page = _reference_hook().cli_reference()
    sections = _sections(page)
    commands = list(_subcommands(build_parser()))
    assert len(commands) >= 16
    for path, parser in commands:
        block = sections[f"`wsss {' '.join(path)}`"]
        options = [option for action in parser._actions for option in action.option_strings]
        assert [option for option in options if option not in block] == [], path


def test_the_layout_names_every_module_of_the_package():
    layout = (DOCS / "design.md").read_text().split("## Layout", 1)[1]
    package = Path(wsss.__file__).parent
    modules = [path for path in package.rglob("*.py") if path.name != "__init__.py"]
    assert len(modules) > 100
    assert [str(path.relative_to(package)) for path in modules if path.name not in layout] == []
    for folder in sorted({path.parent for path in modules} - {package}):
        assert f"{folder.name}/" in layout, folder


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=120)


def test_the_docs_site_builds_strict(tmp_path):
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    for page in ("reference/config/index.html", "reference/cli/index.html", "guide/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    assert "--labeler" in (tmp_path / "site" / "reference/cli/index.html").read_text()


@pytest.mark.parametrize("link", ["guide.md#no-such-heading", "no-such-page.md"])
def test_a_broken_link_or_anchor_fails_the_docs_build(tmp_path, link):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    with (tmp_path / "docs" / "export.md").open("a") as page:
        page.write(f"\nSee [nowhere]({link}).\n")
    built = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert link.split("#")[0] in built.stderr
