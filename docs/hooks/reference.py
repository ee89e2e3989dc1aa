"""MkDocs hook: the config and CLI reference pages, generated from the code at every build.

The config reference walks the pydantic models of a study (``wsss.config.StudyConfig`` and every
section, list item and labeler's params below it); the CLI reference walks the argparse parser
of ``wsss`` (``wsss.cli.main.build_parser``). Neither page is on disk, so neither can drift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

CONFIG_PAGE = "reference/config.md"
CLI_PAGE = "reference/cli.md"
HELP_WIDTH = 100


# --- the config reference ------------------------------------------------------------------

def type_name(annotation: object) -> str:
    """A field's type as a reader writes it: ``int``, ``list[str]``, ``one of 'a', 'b'``, ``X or None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Annotated:
        return "path" if any(type(item).__name__ == "IsPath" for item in args[1:]) else type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(value) for value in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else origin.__name__
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}


def constraints(field: FieldInfo) -> str:
    """The field's bounds (``>= 1, <= 2048``), from its own metadata and an ``Annotated`` type's."""
    found = list(field.metadata)
    stack = [field.annotation]
    while stack:  # bounds carried inside Annotated[...] members of a union or container
        annotation = stack.pop()
        if typing.get_origin(annotation) is typing.Annotated:
            found += typing.get_args(annotation)[1:]
        stack += [arg for arg in typing.get_args(annotation) if not isinstance(arg, (str, int, float))]
    bounds = []
    for item in found:
        for attr, sign in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None and f"{sign} {value}" not in bounds:
                bounds.append(f"{sign} {value}")
    return ", ".join(bounds)


def default_text(field: FieldInfo) -> str:
    """The default as YAML-ish JSON, ``required`` when there is none, ``(section)`` for a model."""
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def nested_models(annotation: object) -> list[tuple[str, type[BaseModel]]]:
    """The models a field holds, with the suffix its dotted path takes (``""`` or ``[]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    suffix = "[]" if origin in (list, tuple, set) else "{}" if origin is dict else ""
    found = []
    for arg in args[-1:] if origin is dict else args:
        found += [(suffix + inner, model) for inner, model in nested_models(arg)]
    return found


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, ``<...>`` shown as text outside code spans."""
    pieces = " ".join(text.split()).replace("|", "\\|").split("`")
    for index in range(0, len(pieces), 2):
        pieces[index] = pieces[index].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces)


def field_type(field: FieldInfo) -> str:
    if any(type(item).__name__ == "IsPath" for item in field.metadata):
        return type_name(field.annotation).replace("str", "path", 1)
    return type_name(field.annotation)


def model_table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append(f"| `{name}` | {_cell(field_type(field))} | {_cell(default_text(field))} | "
                    f"{_cell(constraints(field))} | {_cell(field.description or '')} |")
    return rows


def model_sections(model: type[BaseModel], path: str) -> Iterator[tuple[str, type[BaseModel]]]:
    """``(dotted path, model)`` of ``model`` and of every model below it, depth first."""
    yield path, model
    for name, field in model.model_fields.items():
        for suffix, inner in nested_models(field.annotation):
            yield from model_sections(inner, f"{path}.{name}{suffix}" if path else f"{name}{suffix}")


def _doc(thing: type, module_too: bool = False) -> str:
    """The first paragraph of a class's own docstring (else, with ``module_too``, its module's)."""
    doc = thing.__doc__ if "__doc__" in vars(thing) else None
    if not doc and module_too:
        doc = sys.modules[thing.__module__].__doc__
    doc = doc or ""
    return " ".join(doc.split("\n\n")[0].split())


def config_reference() -> str:
    """The config reference page: every section and field of a study, then every labeler's params."""
    from wsss.config import StudyConfig
    from wsss.labelers.registry import get_labeler_class, list_labelers

    lines = ["# Config reference", "",
             "Generated from the pydantic models in `wsss/config/` when the site is built. A study is one "
             "YAML file; `wsss config show FILE` prints it with every default filled in, and an unknown "
             "field or a bad value fails before any work, naming the field. Paths below are dotted as "
             "in `--set` (`[]`: each item of a list, `{}`: each value of a mapping).", ""]
    for path, model in model_sections(StudyConfig, ""):
        lines += [f"## `{path or 'study'}`", "", f"*{model.__name__}*" + (f": {_doc(model)}" if _doc(model) else ""),
                  "", *model_table(model), ""]
    lines += ["## Labeler params", "",
              "The `params` of a `labelers` item, by labeler `name` (`wsss labelers` lists them).", ""]
    for name in list_labelers():
        labeler = get_labeler_class(name)
        lines += [f"### `{name}`", "", _doc(labeler, module_too=True), ""]
        lines += [*model_table(labeler.Params), ""] if labeler.Params.model_fields else ["No params.", ""]
    return "\n".join(lines)


# --- the CLI reference ---------------------------------------------------------------------

def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """``(words after wsss, parser, one-line help)`` of every subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name, "")
                yield from commands(sub, (*path, name))


@contextmanager
def _help_width(columns: int) -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def cli_reference() -> str:
    """The CLI reference page: every verb of ``wsss`` with its help and options, as ``--help`` prints them."""
    from wsss.cli.main import build_parser

    with _help_width(HELP_WIDTH):
        parser = build_parser()
        lines = ["# CLI reference", "",
                 "Generated from the parser in `wsss/cli/main.py` when the site is built: each verb's "
                 "`--help`, as `wsss VERB --help` prints it.", "",
                 "```text", parser.format_help().rstrip(), "```", ""]
        for path, sub, summary in commands(parser):
            lines += [f"{'#' * min(len(path) + 1, 6)} `wsss {' '.join(path)}`", "", summary, "",
                      "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


# --- the hook ------------------------------------------------------------------------------

def on_files(files, config):
    """Add the two generated pages to the site (they exist only in the build)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, CONFIG_PAGE, content=config_reference()))
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    return files
