"""Guards that run around every request: an estimated-cost limit and a timeout.

The cost of a query is an upper estimate of the fields it resolves, counted before anything
runs: each field counts once per object it is resolved on (`cif` counts 100 and `extxyz` 20:
rendering a 136-site COD cell takes about 9 ms and 1.4 ms, far more than a plain field), and
a list multiplies what is selected inside it by its size: the `first` argument where the
field has one (a connection's `first` sizes its `edges`), else a nominal size
(`NOMINAL_LIST`, sites `NOMINAL_SITES`). Aliases and fragments count in full.
So ``structures(first: 100) { edges { node { id labels { value } } } }`` costs
structures 1 + edges 1 + 100 x (node 1 + id 1 + labels 1 + 10 x value 1) = 1,302.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from strawberry.extensions import SchemaExtension

from crystaldb.api.pagination import MAX_PAGE

NOMINAL_LIST = 10  # items assumed in a nested list without `first` (labels, predictions, ...)
NOMINAL_SITES = 100  # sites assumed per structure
CIF_WEIGHT = 100  # pymatgen's CIF writer, per structure
EXTXYZ_WEIGHT = 20  # ase's extended XYZ writer, per structure
WEIGHTS: Mapping[tuple[str, str], int] = {
    ("Structure", "cif"): CIF_WEIGHT,
    ("Structure", "extxyz"): EXTXYZ_WEIGHT,
}
SIZES: Mapping[tuple[str, str], int] = {("Structure", "sites"): NOMINAL_SITES}
TIMEOUT_SETTING = "CRYSTALDB_API_TIMEOUT"
COST_SETTING = "CRYSTALDB_API_MAX_COST"


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The estimated cost of the operation a request runs (0 if there is none to run)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name and o.name.value == operation_name)
    ]
    if len(chosen) != 1:
        return 0  # graphql-core refuses the request itself
    operation = chosen[0]
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
    walker = _Walker(schema, document, {**defaults, **(variables or {})})
    return walker.cost(operation.selection_set, root, 1, None)


class _Walker:
    """Walks selection sets with the schema's types, multiplying by list sizes."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]):
        self.schema = schema
        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.expanding: list[str] = []  # fragment spreads being expanded (cycles are invalid)

    def cost(
        self,
        selections: SelectionSetNode,
        parent: GraphQLNamedType,
        count: int,
        page: int | None,
    ) -> int:
        """What `selections` cost when resolved on `count` objects of type `parent`."""
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, count, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, inner or parent, count, page)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in self.expanding:
                    continue
                inner = self.schema.get_type(fragment.type_condition.name.value) or parent
                self.expanding.append(name)
                total += self.cost(fragment.selection_set, inner, count, page)
                self.expanding.pop()
        return total

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType, count: int, page: int | None
    ) -> int:
        """The field itself, then its selections on as many objects as it yields."""
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType):
            return 0  # introspection (__typename, __schema) is free
        field = parent.fields.get(name)
        if field is None:
            return 0  # validation has refused it already
        total = count * WEIGHTS.get((parent.name, name), 1)
        if node.selection_set is None:
            return total
        first = self._first(node, field)
        inner_page = None
        if is_list_type(get_nullable_type(field.type)):
            size = first if first is not None else page
            if size is None:
                size = SIZES.get((parent.name, name), NOMINAL_LIST)
        else:
            size, inner_page = 1, first  # a connection: `first` sizes the lists inside it
        inner = get_named_type(field.type)
        return total + self.cost(node.selection_set, inner, count * size, inner_page)

    def _first(self, node: FieldNode, field: GraphQLField) -> int | None:
        """The field's `first` (given, from a variable, or its default), within 0..MAX_PAGE."""
        if "first" not in field.args:
            return None
        value: Any = field.args["first"].default_value
        for argument in node.arguments or ():
            if argument.name.value != "first":
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


def cost_error(cost: int, limit: int) -> GraphQLError:
    """The refusal: the estimate, the limit, and how to ask for less."""
    return GraphQLError(
        f"query cost {cost:,} is over the limit of {limit:,} ({COST_SETTING}): ask for fewer "
        "structures per page (first) and page on with `after: endCursor`, or select fewer "
        f"nested lists, renderings or aliases (each field counts once per object; a list counts "
        f"as its `first`, else {NOMINAL_LIST} items, sites {NOMINAL_SITES}; cif counts "
        f"{CIF_WEIGHT}, extxyz {EXTXYZ_WEIGHT})",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "maxCost": limit},
    )


def timeout_error(seconds: float) -> GraphQLError:
    """The answer to a request cancelled for running too long."""
    return GraphQLError(
        f"the request ran longer than {seconds:g} s and was cancelled ({TIMEOUT_SETTING}): "
        "ask for fewer structures per page (first), fewer nested fields or a narrower filter",
        extensions={"code": "TIMEOUT", "timeoutSeconds": seconds},
    )


class CostLimiter(SchemaExtension):
    """Refuses, before it runs, an operation whose estimated cost is over `max_cost`."""

    def __init__(self, *, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        """Runs after parsing and validation, when the variables are known."""
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            cost = estimate_cost(
                context.schema._schema, document, context.operation_name, context.variables
            )
            if cost > self.max_cost:
                context.result = ExecutionResult(
                    data=None, errors=[cost_error(cost, self.max_cost)]
                )
        yield
