"""The error tree is one file, drawn in its docstring; the drawing cannot drift from the classes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keel.errors

SRC = Path(keel.errors.__file__).parent
TREE = {
    name for name, cls in inspect.getmembers(keel.errors, inspect.isclass) if issubclass(cls, keel.errors.KeelError)
}


def test_every_error_class_is_drawn_in_the_tree() -> None:
    doc = keel.errors.__doc__ or ""
    assert TREE and not [name for name in sorted(TREE) if name not in doc]


def test_no_error_class_is_defined_outside_errors_py() -> None:
    stray = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & TREE:
                    stray.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert stray == []


def test_every_error_has_a_code() -> None:
    """The OpenAI error shape's ``code`` is never null for an error Keel raises on purpose."""
    missing = [name for name in sorted(TREE) if not getattr(keel.errors, name).code]
    assert missing == []
