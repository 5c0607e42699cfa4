"""A cosmic-ray operator provider: string constants marked so they no longer match.

cosmic-ray's core operators change operators, numbers, booleans, loops and exceptions but
never a string. In the security-critical modules the strings are data: header names, claim
names, cookie and key names, prefixes. `"x-username"` becoming `"XXx-usernameXX"` is the
header removed from the set the gateway drops; `claims["roles"]` becoming
`claims["XXrolesXX"]` is a claim no longer read. Messages of raised errors and docstrings
are left alone: their wording is not a security property.

`make mutation` registers this provider (as `lct`) for cosmic-ray in its scratch copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import parso.python.tree
from cosmic_ray.operators.operator import Example, Operator

MARK = "XX"


def _is_docstring(node: Any) -> bool:
    parent = node.parent
    return bool(parent is not None and parent.type == "simple_stmt" and parent.children[0] is node)


def _in_raise(node: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "raise_stmt":
            return True
        parent = parent.parent
    return False


def marked(literal: str) -> str:
    """Return a string literal's source with MARK inside both quotes (`b"a"` -> `b"XXaXX"`)."""
    start = next(index for index, char in enumerate(literal) if char in "\"'")
    quote = (
        literal[start] * 3 if literal[start : start + 3] == literal[start] * 3 else literal[start]
    )
    body = literal[start + len(quote) : len(literal) - len(quote)]
    return f"{literal[:start]}{quote}{MARK}{body}{MARK}{quote}"


class MarkString(Operator):  # type: ignore[misc]  # cosmic-ray ships no type hints
    """Make a string constant match nothing it matched before."""

    def mutation_positions(self, node: Any) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
        if (
            isinstance(node, parso.python.tree.String)
            and not _is_docstring(node)
            and not _in_raise(node)
        ):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        """Return the marked string."""
        assert index == 0, "one mutation per string"  # nosec B101
        return parso.python.tree.String(marked(node.value), node.start_pos, prefix=node.prefix)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        """Show what the operator makes of a few literals."""
        return (
            Example('x = "a"', 'x = "XXaXX"'),
            Example("x = {b'trailer'}", "x = {b'XXtrailerXX'}"),
            Example('x = """doc"""', 'x = """XXdocXX"""'),
        )


class OperatorProvider:
    """cosmic-ray's provider interface: operator names, and the class of each."""

    _OPERATORS: ClassVar[dict[str, type[Operator]]] = {"MarkString": MarkString}

    def __iter__(self) -> Iterator[str]:
        return iter(self._OPERATORS)

    def __getitem__(self, name: str) -> type[Operator]:
        return self._OPERATORS[name]
