"""The package layout shows the data flow: imports point only backwards along it."""

import ast
from pathlib import Path

import wsss

PACKAGE = Path(wsss.__file__).parent
# Shared leaves first, then the data flow; the CLI comes last and may import anything.
ORDER = ["storage", "console", "identity", "metrics", "paper", "panels", "formats", "raycluster", "data", "models",
         "labelers", "config", "tracking", "masks", "train", "sweep", "report", "benchmark", "cli"]


def _part(dotted: str) -> str:
    return dotted.split(".")[1]


def _wsss_imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level) of every ``from wsss... import`` in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    return [(node.module, id(node) in top) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wsss.")]


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(("wsss", *path.relative_to(PACKAGE).with_suffix("").parts)), path)
            for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_belongs_to_a_known_part():
    parts = {_part(name) for name, _ in _modules() if name.count(".") >= 1}
    assert parts - {"__init__"} <= set(ORDER), parts - set(ORDER)


def test_imports_point_backwards_along_the_data_flow():
    rank = {name: index for index, name in enumerate(ORDER)}
    upward = []
    for name, path in _modules():
        if name.endswith("__init__"):
            continue
        mine = _part(name)
        for module, _ in _wsss_imports(path):
            theirs = _part(module)
            if theirs != mine and rank[theirs] > rank[mine]:
                upward.append(f"{name} imports {module}")
    assert not upward, upward


def test_imports_between_wsss_modules_sit_at_the_top_of_files():
    nested = [f"{name}: {module}" for name, path in _modules()
              for module, at_top in _wsss_imports(path) if not at_top and module != "wsss.config"]
    assert not nested, nested  # only TYPE_CHECKING imports of the config stay below the top


def test_cli_verb_groups_each_add_their_parser():
    from wsss.cli.main import VERB_GROUPS, build_parser

    verbs = build_parser()._subparsers._group_actions[0].choices
    assert {"config", "data", "eval", "classify", "pseudo", "pseudo-eval", "labelers", "train",
            "predict", "sweep", "report", "benchmark"} <= set(verbs)
    assert all(hasattr(group, "add_parser") for group in VERB_GROUPS)
