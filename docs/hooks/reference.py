"""mkdocs hook: fill the generated parts of the reference pages from the code.

mkdocs loads this file by path (``hooks:`` in mkdocs.yml). On ``on_page_markdown`` it replaces

- ``<!-- generated: filters -->`` with the filter fields, from ``describe_fields()``;
- ``<!-- generated: settings -->`` with the environment settings, from
  ``crystaldb.platform.settings.Settings`` (a pydantic-settings class).

Nothing here is copied by hand, so the pages follow the code. Only those two modules are
imported.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

FILTERS = "<!-- generated: filters -->"
SETTINGS = "<!-- generated: settings -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if FILTERS in markdown:
        markdown = markdown.replace(FILTERS, filters_markdown())
    if SETTINGS in markdown:
        markdown = markdown.replace(SETTINGS, settings_markdown())
    return markdown


# --------------------------------------------------------------------------- filters


def _describe_fields() -> str:
    """The field table as plain text, from the filter language's field table."""
    try:
        from crystaldb.query.fields import describe_fields
    except ImportError as exc:
        raise PluginError(
            "docs/hooks/reference.py: cannot import describe_fields from "
            f"crystaldb.query.fields ({exc}); is crystaldb installed?"
        ) from exc
    return describe_fields()


_FIELD_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<description>.*); (?P<operators>[^;]*)$")
_EXAMPLE_LINE = re.compile(r"^\s+e\.g\.\s+(?P<example>.*)$")


def _cell(text: str) -> str:
    """Plain text for a table cell: pipes escaped, HTML's < and > spelled out."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").strip()


def _code(text: str) -> str:
    text = text.strip()
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    # Python-Markdown's tables do not split a row at a pipe inside a code span
    return f"{fence}{pad}{text}{pad}{fence}"


def filters_markdown() -> str:
    """A table of field, meaning, operators and example; the plain text if it does not parse.

    describe_fields() writes two lines per field: ``NAME  DESCRIPTION; OPERATORS`` and an
    indented ``e.g. EXAMPLE``.
    """
    text = _describe_fields()
    lines = [line for line in text.splitlines() if line.strip()]
    rows: list[str] = []
    pending: dict[str, str] | None = None
    parsed = bool(lines)
    for line in lines:
        example = _EXAMPLE_LINE.match(line)
        if example and pending is not None:
            pending["example"] = example["example"]
            rows.append(_filter_row(pending))
            pending = None
            continue
        field = _FIELD_LINE.match(line)
        if field is None or pending is not None:
            parsed = False
            break
        pending = field.groupdict()
    if pending is not None:
        pending["example"] = ""
        rows.append(_filter_row(pending))
    if not parsed:
        return f"```text\n{text}\n```"
    header = "| field | meaning | operators | example |\n|---|---|---|---|\n"
    return header + "\n".join(rows)


def _filter_row(field: dict[str, str]) -> str:
    operators = ", ".join(_code(op) for op in field["operators"].split(", ") if op.strip())
    example = _code(field["example"]) if field["example"] else ""
    return f"| {_code(field['name'])} | {_cell(field['description'])} | {operators} | {example} |"


# --------------------------------------------------------------------------- settings


def _type_name(annotation: Any) -> str:
    """`str | None`, `int`, `list[str]`, ... as people write them."""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(metadata: list[Any]) -> str:
    """Constraints such as ge=1, le=512 as `1 <= x <= 512`."""
    low = high = ""
    for item in metadata:
        for attribute, symbol, side in (
            ("ge", ">=", "low"),
            ("gt", ">", "low"),
            ("le", "<=", "high"),
            ("lt", "<", "high"),
        ):
            value = getattr(item, attribute, None)
            if value is None:
                continue
            if side == "low":
                low = f"{symbol} {value}"
            else:
                high = f"{symbol} {value}"
    return ", ".join(part for part in (low, high) if part)


def _show_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        if home not in ("", "/") and text.startswith(home):
            text = "~" + text[len(home) :]
        return _code(text)
    if isinstance(value, (list, tuple, set, dict)) and not value:
        return "none (empty)"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, int):
        return _code(str(value))
    return _code(str(value))


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each annotated attribute of the class, where there is one."""
    import ast
    import inspect
    import itertools
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    found: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = " ".join(following.value.value.split())
    return found


def settings_markdown() -> str:
    """One row per settings field: environment variable, type, default, description."""
    try:
        from crystaldb.platform import settings as module
    except ImportError as exc:
        raise PluginError(
            f"docs/hooks/reference.py: cannot import crystaldb.platform.settings ({exc}); "
            "is crystaldb installed?"
        ) from exc
    cls = module.Settings
    config = cls.model_config
    prefix = str(config.get("env_prefix", "") or "")
    from pydantic_core import PydanticUndefined

    docstrings = _attribute_docstrings(cls)
    rows = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        variable = alias or f"{prefix}{field.alias or name}"
        if not config.get("case_sensitive", False):
            variable = variable.upper()
        kind = _type_name(field.annotation)
        bounds = _bounds(list(field.metadata))
        if bounds:
            kind = f"{kind} ({bounds})"
        if field.default_factory is not None:
            try:
                default = _show_default(field.default_factory())  # type: ignore[call-arg]
            except Exception:  # a factory that needs more than nothing
                default = "computed"
        elif field.default is PydanticUndefined:
            default = "required"
        else:
            default = _show_default(field.default)
        description = field.description or docstrings.get(name, "")
        rows.append(f"| {_code(variable)} | {_code(kind)} | {default} | {_cell(description)} |")
    config_env = getattr(module, "CONFIG_ENV", None)
    if config_env:
        finder = getattr(module, "default_config_file", None)
        where = ""
        if finder is not None:
            where = _show_default(finder())
            where = f"; unset: {where} when that file exists"
        rows.append(
            f"| {_code(config_env)} | `path` | unset | path of the TOML config file "
            f"(read after the environment, before the defaults){where} |"
        )
    summary = (cls.__doc__ or "").strip().splitlines()
    lead = f"{_cell(summary[0])}\n\n" if summary else ""
    header = (
        f"{lead}Environment prefix: `{prefix}` (from `Settings.model_config`).\n\n"
        "| environment variable | type | default | description |\n|---|---|---|---|\n"
    )
    return header + "\n".join(rows)
