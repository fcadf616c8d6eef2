"""Guards that run around every request: bounds on the document, an estimated-cost limit, a
runtime budget for what only the data can size, and a timeout.

Every walk here is linear in the document: a fragment is measured once per (type, page) and
reused wherever it is spread, so a fan-out of fragments spreading fragments (an 845-byte
query expanding to a million fields) costs microseconds to measure, not minutes.

The cost of a query is an upper estimate of the values it resolves, counted before anything
runs: each field counts once per object it is resolved on (`cif` counts 100 and `extxyz` 20:
rendering a 136-site COD cell takes about 9 ms and 1.4 ms, far more than a plain field;
`__typename` 1, an introspection root 1,000), and a list multiplies what is selected inside it
by its size: the `first` (or `k`) argument where the field has one (a connection's `first`
sizes its `edges`), else a nominal size (`NOMINAL_LIST`, sites `NOMINAL_SITES`; a graph's edge
arrays count `NOMINAL_EDGES` values). Aliases and fragments count in full.
So ``structures(first: 100) { edges { node { id labels { value } } } }`` costs
structures 1 + edges 1 + 100 x (node 1 + id 1 + labels 1 + 10 x value 1) = 1,302.

Sizes that only the data knows are charged when they are known: a structure whose `sites` hold
more than NOMINAL_SITES, or a quotient graph with more than NOMINAL_EDGES edges, charges the
excess to the request's `Budget` (what the estimate left under the limit) before anything is
built, and a request that runs out is refused with the same error as one estimated too costly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Source,
    TokenKind,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.language.lexer import Lexer
from strawberry.extensions import SchemaExtension

from crystaldb.api.budget import COST_SETTING, NOMINAL_EDGES, NOMINAL_SITES, Budget
from crystaldb.api.errors import CostError
from crystaldb.api.inputs import input_error
from crystaldb.api.pagination import MAX_PAGE

NOMINAL_LIST = 10  # items assumed in a nested list without `first` (labels, predictions, ...)
CIF_WEIGHT = 100  # pymatgen's CIF writer, per structure
EXTXYZ_WEIGHT = 20  # ase's extended XYZ writer, per structure
INTROSPECTION_WEIGHT = 1_000  # one __schema or __type: a few thousand small fields
EDGE_ARRAYS = ("edgeSrc", "edgeDst", "edgeImages", "edgeLengths")
WEIGHTS: Mapping[tuple[str, str], int] = {
    ("Structure", "cif"): CIF_WEIGHT,
    ("Structure", "extxyz"): EXTXYZ_WEIGHT,
    **{("QuotientGraph", name): NOMINAL_EDGES for name in EDGE_ARRAYS},
}
SIZES: Mapping[tuple[str, str], int] = {("Structure", "sites"): NOMINAL_SITES}
SIZE_ARGUMENTS = ("first", "k")  # the arguments that say how long a list field's answer is

MAX_DEPTH = 10  # nested fields (introspection's own nesting not counted)
MAX_ALIASES = 100  # aliased fields in the document, fragments expanded
MAX_SELECTIONS = 200  # fields and fragments in one selection set
MAX_TOKENS = 5_000  # lexical tokens of the query text (GraphiQL's introspection: about 200)
MAX_QUERY_CHARACTERS = 100_000  # of the query text; structures go in variables or uploads
MAX_NESTING = 64  # brackets ({, [, () open at once: graphql-core's parser recurses on each

TIMEOUT_SETTING = "CRYSTALDB_API_TIMEOUT"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (served values: the settings and the constants above)."""

    max_cost: int | None = None
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_selections: int = MAX_SELECTIONS
    max_tokens: int = MAX_TOKENS
    max_query_characters: int = MAX_QUERY_CHARACTERS


def chosen_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation a request runs, or None when graphql-core will refuse the request."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name and o.name.value == operation_name)
    ]
    return chosen[0] if len(chosen) == 1 else None


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    """The document's fragments by name."""
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


# --- the text: nesting ------------------------------------------------------------------------

_OPENING = re.compile(r"[{\[(]")
_OPENS = {TokenKind.BRACE_L, TokenKind.BRACKET_L, TokenKind.PAREN_L}
_CLOSES = {TokenKind.BRACE_R, TokenKind.BRACKET_R, TokenKind.PAREN_R}


def nesting_error(query: str, max_tokens: int) -> GraphQLError | None:
    """Why the text nests too deep to parse (the parser would exhaust Python's stack), or None.

    Cheap for ordinary queries: nesting is at most the number of opening brackets, so only a
    text with more than MAX_NESTING of them is lexed (up to max_tokens tokens; the parser
    refuses longer texts itself).
    """
    if len(_OPENING.findall(query)) <= MAX_NESTING:
        return None
    lexer = Lexer(Source(query))
    depth = 0
    try:
        for _ in range(max_tokens):
            kind = lexer.advance().kind
            if kind == TokenKind.EOF:
                break
            depth += (kind in _OPENS) - (kind in _CLOSES)
            if depth > MAX_NESTING:
                return GraphQLError(
                    f"the query nests brackets more than {MAX_NESTING} deep: no query needs "
                    "that; flatten the filter or the selection",
                    extensions={"code": "QUERY_TOO_DEEP", "maxNesting": MAX_NESTING},
                )
    except GraphQLError:
        return None  # a syntax error: the parser reports it with its position
    return None


# --- the document's shape: depth, aliases, width ------------------------------------------


@dataclass(frozen=True)
class _Shape:
    depth: int  # nested fields below (a leaf is 0)
    aliases: int  # aliased fields, fragments expanded


class _TooWide(Exception):
    def __init__(self, count: int) -> None:
        self.count = count


class _ShapeWalker:
    """Depth and alias count of selection sets, each fragment measured once."""

    def __init__(self, document: DocumentNode, max_selections: int) -> None:
        self.fragments = _fragments(document)
        self.max_selections = max_selections
        self.memo: dict[str, _Shape] = {}
        self.expanding: set[str] = set()  # cycles are invalid; validation says so later

    def shape(self, node: SelectionSetNode | None, seen: set[str] | None = None) -> _Shape:
        """The shape of one selection set (spreads of one fragment counted once in it, as
        graphql-core merges them)."""
        if node is None:
            return _Shape(0, 0)
        if len(node.selections) > self.max_selections:
            raise _TooWide(len(node.selections))
        seen = set() if seen is None else seen
        depth = aliases = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                inner = self.shape(selection.selection_set)
                aliases += inner.aliases + (selection.alias is not None)
                if selection.selection_set is not None and not selection.name.value.startswith(
                    "__"
                ):
                    depth = max(depth, inner.depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.shape(selection.selection_set, seen)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in seen:
                    continue
                seen.add(name)
                inner = self.fragment(name)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
        return _Shape(depth, aliases)

    def fragment(self, name: str) -> _Shape:
        """A fragment's shape, measured once."""
        if name in self.memo:
            return self.memo[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return _Shape(0, 0)
        self.expanding.add(name)
        self.memo[name] = self.shape(fragment.selection_set)
        self.expanding.discard(name)
        return self.memo[name]


def shape_error(
    document: DocumentNode, limits: Limits, operation_name: str | None = None
) -> GraphQLError | None:
    """Why the document is too deep, too wide or too aliased to validate, or None."""
    operation = chosen_operation(document, operation_name)
    if operation is None:
        return None  # graphql-core refuses the request itself
    walker = _ShapeWalker(document, limits.max_selections)
    try:
        shape = walker.shape(operation.selection_set)
    except _TooWide as wide:
        return GraphQLError(
            f"a selection set holds {wide.count:,} fields and fragments, over the limit of "
            f"{limits.max_selections}: split the query",
            extensions={"code": "QUERY_TOO_WIDE", "maxSelections": limits.max_selections},
        )
    if shape.depth > limits.max_depth:
        name = operation.name.value if operation.name else "anonymous"
        return GraphQLError(
            f"'{name}' exceeds maximum operation depth of {limits.max_depth}",
            extensions={"code": "QUERY_TOO_DEEP", "maxDepth": limits.max_depth},
        )
    if shape.aliases > limits.max_aliases:
        return GraphQLError(
            f"the query uses {shape.aliases:,} aliased fields (fragments expanded), over the "
            f"limit of {limits.max_aliases}: page with `first` and `after` instead of aliasing "
            "the same field",
            extensions={"code": "TOO_MANY_ALIASES", "maxAliases": limits.max_aliases},
        )
    return None


# --- the estimated cost ------------------------------------------------------------------------


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The estimated cost of the operation a request runs (0 if there is none to run)."""
    operation = chosen_operation(document, operation_name)
    if operation is None:
        return 0  # graphql-core refuses the request itself
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]
    if root is None:
        return 0
    defaults = {
        d.variable.name.value: d.default_value.value
        for d in operation.variable_definitions or ()
        if isinstance(d.default_value, IntValueNode)
    }
    walker = _CostWalker(schema, document, {**defaults, **(variables or {})})
    return walker.unit(operation.selection_set, root, None)


class _CostWalker:
    """The cost of selection sets on one object, multiplying by list sizes; each fragment is
    costed once per (type, page) and the figure reused (cost is linear in the objects)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]):
        self.schema = schema
        self.variables = variables
        self.fragments = _fragments(document)
        self.memo: dict[tuple[str, str, int | None], int] = {}
        self.expanding: set[str] = set()  # fragment spreads being expanded (cycles are invalid)

    def unit(
        self,
        selections: SelectionSetNode,
        parent: GraphQLNamedType,
        page: int | None,
        seen: set[str] | None = None,
    ) -> int:
        """What `selections` cost when resolved on one object of type `parent`."""
        seen = set() if seen is None else seen
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.unit(selection.selection_set, inner or parent, page, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                total += self._fragment(selection.name.value, parent, page)
        return total

    def _fragment(self, name: str, parent: GraphQLNamedType, page: int | None) -> int:
        """A fragment's cost on one object, computed once per type and page."""
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return 0
        inner = self.schema.get_type(fragment.type_condition.name.value) or parent
        key = (name, inner.name, page)
        if key not in self.memo:
            self.expanding.add(name)
            self.memo[key] = self.unit(fragment.selection_set, inner, page)
            self.expanding.discard(name)
        return self.memo[key]

    def _field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        """The field itself, then its selections on as many objects as it yields."""
        name = node.name.value
        if name == "__typename":
            return 1
        if name.startswith("__"):
            return INTROSPECTION_WEIGHT  # __schema, __type: priced whole, not walked
        if not isinstance(parent, GraphQLObjectType):
            return 0
        field = parent.fields.get(name)
        if field is None:
            return 0  # validation has refused it already
        weight = WEIGHTS.get((parent.name, name), 1)
        if node.selection_set is None:
            return weight
        first = self._size(node, field)
        inner_page = None
        if is_list_type(get_nullable_type(field.type)):
            size = first if first is not None else page
            if size is None:
                size = SIZES.get((parent.name, name), NOMINAL_LIST)
        else:
            size, inner_page = 1, first  # a connection: `first` sizes the lists inside it
        inner = get_named_type(field.type)
        return weight + size * self.unit(node.selection_set, inner, inner_page)

    def _size(self, node: FieldNode, field: GraphQLField) -> int | None:
        """The field's `first` or `k` (given, from a variable, or its default), in 0..MAX_PAGE."""
        names = [n for n in SIZE_ARGUMENTS if n in field.args]
        if not names:
            return None
        value: Any = field.args[names[0]].default_value
        for argument in node.arguments or ():
            if argument.name.value != names[0]:
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value, value)
        if isinstance(value, str) and value.isdecimal():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        return max(0, min(value, MAX_PAGE))  # larger pages are refused with their own error


def _figure(cost: int) -> str:
    """A cost as printed: exact, unless it runs to more digits than anyone reads."""
    return f"{cost:,}" if cost < 10**15 else "more than 10^15"


def cost_error(cost: int, limit: int) -> GraphQLError:
    """The refusal: the estimate, the limit, and how to ask for less."""
    return GraphQLError(
        f"query cost {_figure(cost)} is over the limit of {limit:,} ({COST_SETTING}): ask for "
        "fewer structures per page (first) and page on with `after: endCursor`, or select fewer "
        f"nested lists, renderings or aliases (each field counts once per object; a list counts "
        f"as its `first`, else {NOMINAL_LIST} items, sites {NOMINAL_SITES}; cif counts "
        f"{CIF_WEIGHT}, extxyz {EXTXYZ_WEIGHT})",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": min(cost, 10**15), "maxCost": limit},
    )


def timeout_error(seconds: float) -> GraphQLError:
    """The answer to a request cancelled for running too long."""
    return GraphQLError(
        f"the request ran longer than {seconds:g} s and was cancelled ({TIMEOUT_SETTING}): "
        "ask for fewer structures per page (first), fewer nested fields or a narrower filter",
        extensions={"code": "TIMEOUT", "timeoutSeconds": seconds},
    )


def query_length_error(length: int, limit: int) -> GraphQLError:
    """The refusal of a query text too long to parse."""
    return GraphQLError(
        f"the query text has {length:,} characters, over the limit of {limit:,}: send "
        "structures as variables or uploads, and long lists in pages",
        extensions={"code": "QUERY_TOO_LONG", "maxCharacters": limit},
    )


# --- the extension -----------------------------------------------------------------------------


class Guards(SchemaExtension):
    """Bounds the document before validation (tokens, depth, width, aliases), refuses an
    operation whose inputs are malformed or whose estimated cost is over the limit before it
    runs, and hands the request a Budget for the rest."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def on_operation(self) -> Iterator[None]:
        """graphql-core's parser stops at max_tokens."""
        self.execution_context.parse_options["max_tokens"] = self.limits.max_tokens
        yield

    def on_validate(self) -> Iterator[None]:
        """The shape check, unless the document is known to have passed validation before."""
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            error = shape_error(document, self.limits, context.operation_name)
            if error is not None:
                context.pre_execution_errors = [error]  # strawberry then skips validation
        yield

    def on_execute(self) -> Iterator[None]:
        """Runs after parsing and validation, when the variables are known."""
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            error = input_error(document, context.operation_name, context.variables)
            if error is None and self.limits.max_cost is not None:
                error = self._cost(document)
            if error is not None:
                context.result = ExecutionResult(data=None, errors=[error])
        yield
        _one_cost_error(context.result)

    def _cost(self, document: DocumentNode) -> GraphQLError | None:
        """The estimate checked against the limit; what is left becomes the request's Budget."""
        context = self.execution_context
        limit = self.limits.max_cost
        assert limit is not None
        cost = estimate_cost(
            context.schema._schema, document, context.operation_name, context.variables
        )
        if cost > limit:
            return cost_error(cost, limit)
        budget = getattr(context.context, "budget", None)
        if isinstance(budget, Budget):
            budget.remaining, budget.limit = limit - cost, limit
        return None


def _one_cost_error(result: Any) -> None:
    """A budget that ran out fails every field charged after it; one error says it all."""
    errors = getattr(result, "errors", None)
    if not errors:
        return
    kept, seen = [], False
    for error in errors:
        costly = isinstance(error.original_error, CostError)
        if not (costly and seen):
            kept.append(error)
        seen = seen or costly
    result.errors = kept
