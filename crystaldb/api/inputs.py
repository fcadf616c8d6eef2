"""Checks on every argument a request sends, before anything runs: text that PostgreSQL cannot
store or compare (a NUL character, a lone surrogate), lists longer than any query needs, and
input objects nested deeper than any filter needs. Each failure is a GraphQL error naming the
argument (or variable) and the place in it, so no such value reaches the driver, where it
would surface as an internal error, or a recursion, where it would crash the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
)

from crystaldb.api.errors import shorten

MAX_LIST_ITEMS = 1_000  # values in one list argument (space groups, element symbols, models)
MAX_INPUT_DEPTH = 32  # nested input objects and lists (and/or/not filters included)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot take this text, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    position = found.start()
    if found.group() == "\x00":
        return f"contains a NUL character (U+0000) at position {position}, which text cannot hold"
    code = ord(found.group())
    return (
        f"contains a lone surrogate (U+{code:04X}) at position {position}: text must be valid "
        "Unicode"
    )


def _error(where: str, problem: str) -> GraphQLError:
    """An input error naming the argument and the place in it."""
    return GraphQLError(f"{where}: {problem}", extensions={"code": "BAD_USER_INPUT"})


# --- literals in the document ------------------------------------------------------------------


def _arguments(node: Node) -> Iterator[tuple[str, ArgumentNode]]:
    """Every argument in a selection set tree (fields and directives), with its field's name."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, FieldNode):
            for argument in current.arguments or ():
                yield current.name.value, argument
        for directive in getattr(current, "directives", None) or ():
            for argument in directive.arguments or ():
                yield f"@{directive.name.value}", argument
        selections = getattr(current, "selection_set", None)
        if isinstance(selections, SelectionSetNode):
            stack.extend(selections.selections)


def _literal_problem(value: ValueNode, path: str, depth: int) -> GraphQLError | None:
    """The first problem in a literal value (depth-first), or None."""
    if depth > MAX_INPUT_DEPTH:
        return _error(path, f"nested deeper than {MAX_INPUT_DEPTH} levels")
    if isinstance(value, StringValueNode):
        problem = text_problem(value.value)
        return None if problem is None else _error(path, problem)
    if isinstance(value, ListValueNode):
        if len(value.values) > MAX_LIST_ITEMS:
            return _error(path, _too_long(len(value.values)))
        for index, item in enumerate(value.values):
            if (error := _literal_problem(item, f"{path}[{index}]", depth + 1)) is not None:
                return error
    if isinstance(value, ObjectValueNode):
        for field in value.fields:
            found = _literal_problem(field.value, f"{path}.{field.name.value}", depth + 1)
            if found is not None:
                return found
    return None


def _too_long(count: int) -> str:
    """The refusal of a long list."""
    return (
        f"a list of {count:,} values, over the limit of {MAX_LIST_ITEMS:,}: split the request, "
        "or use a range where the field has one"
    )


# --- variables -------------------------------------------------------------------------------


def _variable_problem(value: Any, path: str, depth: int) -> GraphQLError | None:
    """The first problem in a variable's value (depth-first), or None."""
    if depth > MAX_INPUT_DEPTH:
        return _error(path, f"nested deeper than {MAX_INPUT_DEPTH} levels")
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else _error(path, problem)
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            return _error(path, _too_long(len(value)))
        for index, item in enumerate(value):
            if (error := _variable_problem(item, f"{path}[{index}]", depth + 1)) is not None:
                return error
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            if (problem := text_problem(name)) is not None:
                return _error(f"{path} (key {shorten(name)})", problem)
            if (error := _variable_problem(item, f"{path}.{name}", depth + 1)) is not None:
                return error
    return None


def input_error(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> GraphQLError | None:
    """The first malformed argument of the request (literal or variable), or None."""
    for name, value in (variables or {}).items():
        if (error := _variable_problem(value, f"variable ${name}", 0)) is not None:
            return error
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and not (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            continue
        for variable in getattr(definition, "variable_definitions", None) or ():
            if variable.default_value is not None:
                where = f"default of ${variable.variable.name.value}"
                if (error := _literal_problem(variable.default_value, where, 0)) is not None:
                    return error
        for field, argument in _arguments(definition):
            where = f"{field}({argument.name.value})"
            if (error := _literal_problem(argument.value, where, 0)) is not None:
                return error
    return None
