"""What a resolver's field selects below it, read from the document in one linear pass.

strawberry's `info.selected_fields` expands every fragment spread again at each use, so a
fan-out of fragments spreading fragments takes exponential time there; here, as in
graphql-core's own field collection, a fragment is visited once per selection set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)


def _fields(
    sets: Iterable[SelectionSetNode | None], fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields of selection sets merged, fragments flattened, each fragment once."""
    seen: set[str] = set()
    stack = [s for s in sets if s is not None]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    stack.append(fragments[name].selection_set)


def below(info: GraphQLResolveInfo, *path: str) -> set[str]:
    """The names of the fields selected at `path` below the resolver's field (its own
    selection when `path` is empty), over every place the field is selected."""
    fragments = info.fragments
    nodes = list(info.field_nodes)
    for name in path:
        nodes = [
            f for f in _fields((n.selection_set for n in nodes), fragments) if f.name.value == name
        ]
    return {f.name.value for f in _fields((n.selection_set for n in nodes), fragments)}
