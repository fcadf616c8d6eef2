"""Parsed and validated query documents, reused across requests.

Clients send the same few query texts over and over; parsing one and validating it against
the schema (depth limit included) costs 1-1.5 ms, more than the SQL of a typical page. A
document depends only on its text, and whether it is valid only on its text and the schema,
so both are kept per schema, by text, in a small LRU bounded in entries and in bytes. Only a
document that passed validation is remembered as valid: an invalid one is validated (and its
errors made) afresh each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from graphql import DocumentNode, GraphQLSyntaxError, parse
from strawberry.extensions import SchemaExtension

from crystaldb.core.lru import Lru

MAX_DOCUMENTS = 256  # distinct query texts kept: a bound, so odd clients cannot grow memory
MAX_DOCUMENT_BYTES = 64 << 20  # and their estimated memory, parsed
# graphql-core's AST takes about 67 bytes per character of query text (measured: a 52,893-
# character query of 3,000 aliased fields parses to 3.56 MB); 80 leaves room for validation.
AST_BYTES_PER_CHARACTER = 80


def _ast_bytes(query: str) -> int:
    """The estimated memory of the query's parsed document."""
    return AST_BYTES_PER_CHARACTER * len(query)


@dataclass
class _Entry:
    document: DocumentNode
    valid: bool = False


class DocumentCache:
    """Documents by query text, each marked once it passed validation, for one schema."""

    def __init__(
        self,
        maxsize: int = MAX_DOCUMENTS,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        max_tokens: int | None = None,
    ) -> None:
        self._entries: Lru[str, _Entry] = Lru(maxsize, max_bytes, _ast_bytes)
        self.max_tokens = max_tokens

    def entry(self, query: str) -> _Entry | None:
        """What is kept for this text, or None."""
        return self._entries.get(query)

    def keep(self, query: str, document: DocumentNode) -> _Entry:
        """Remember a parsed document (not yet validated)."""
        return self._entries.put(query, _Entry(document))

    def parse(self, query: str) -> DocumentNode | None:
        """The query's document, parsed once; None for a syntax error (never kept)."""
        found = self.entry(query)
        if found is not None:
            return found.document
        try:
            return self.keep(query, parse(query, max_tokens=self.max_tokens)).document
        except GraphQLSyntaxError:
            return None


class CachedDocuments(SchemaExtension):
    """Serves strawberry's parse and validation steps from a DocumentCache."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        """Hands strawberry the kept document, so it does not parse again; keeps a new one."""
        context = self.execution_context
        query = context.query
        found = None if query is None else self.cache.entry(query)
        if found is not None and context.graphql_document is None:
            context.graphql_document = found.document
        yield
        if query is not None and found is None and context.graphql_document is not None:
            self.cache.keep(query, context.graphql_document)

    def on_validate(self) -> Iterator[None]:
        """Skips validating a document that passed before; marks one that passes now."""
        context = self.execution_context
        query = context.query
        found = None if query is None else self.cache.entry(query)
        if found is None or found.document is not context.graphql_document:
            yield
            return
        if found.valid and context.pre_execution_errors is None:
            context.pre_execution_errors = []  # strawberry validates only while this is None
        yield
        if context.pre_execution_errors == []:
            found.valid = True
