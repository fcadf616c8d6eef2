"""The envelopes of OPTIMADE responses (meta, errors, info), built with the `optimade`
package's pydantic models so that their shapes are the specification's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from optimade.models import (
    BaseInfoAttributes,
    BaseInfoResource,
    EntryInfoResource,
    ErrorResponse,
    Implementation,
    LinksResource,
    LinksResourceAttributes,
    OptimadeError,
    Provider,
    ResponseMeta,
    ResponseMetaQuery,
    StructureResourceAttributes,
    Warnings,
)
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from crystaldb import __version__
from crystaldb.api.optimade.entries import PROVIDER, PROVIDER_FIELDS
from crystaldb.api.optimade.paging import SORTABLE

API_VERSION = "1.2.0"
SCHEMA_URL = "https://schemas.optimade.org/openapi/v1.2/optimade.json"
JSON_API = "application/vnd.api+json"
_TITLES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 501: "Not Implemented",
           553: "Version Not Supported", 500: "Internal Server Error"}  # fmt: skip
# standard properties crystaldb serves, with their OPTIMADE types
STANDARD_FIELDS: dict[str, str] = {
    "id": "string", "type": "string", "last_modified": "timestamp", "elements": "list",
    "nelements": "integer", "elements_ratios": "list", "chemical_formula_descriptive": "string",
    "chemical_formula_reduced": "string", "chemical_formula_hill": "string",
    "chemical_formula_anonymous": "string", "dimension_types": "list",
    "nperiodic_dimensions": "integer", "lattice_vectors": "list",
    "cartesian_site_positions": "list", "nsites": "integer", "species": "list",
    "species_at_sites": "list", "structure_features": "list",
}  # fmt: skip


def base_url(request: Request) -> str:
    """The versioned base URL the request came to (…/optimade/v1, or …/optimade)."""
    root = str(request.base_url).rstrip("/")
    return f"{root}/optimade/v1" if "/optimade/v1/" in request.url.path else f"{root}/optimade"


def meta(
    request: Request,
    returned: int | None,
    more: bool = False,
    warnings: list[str] | None = None,
    available: int | None = None,
) -> ResponseMeta:
    """The `meta` object every response carries."""
    query = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    extra: dict[str, Any] = {}
    if warnings:
        extra["warnings"] = [Warnings(title="Warning", detail=w) for w in warnings]
    return ResponseMeta(
        **extra,
        query=ResponseMetaQuery(representation=query),
        api_version=API_VERSION,
        more_data_available=more,
        time_stamp=datetime.now(UTC),
        data_returned=returned,
        data_available=available,
        schema=SCHEMA_URL,
        provider=Provider(
            name="crystaldb",
            description="crystal structures with DFT band gaps, in PostgreSQL",
            prefix=PROVIDER,
        ),
        implementation=Implementation(name="crystaldb", version=__version__),
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as JSON-ready data, unset fields left out (as the spec prefers)."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return data


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> Response:
    """A JSON:API response from a model or from JSON-ready data (strict: no NaN)."""
    if isinstance(model, BaseModel):
        body = model.model_dump_json(exclude_unset=True, by_alias=True)
    else:
        body = json.dumps(model, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type=JSON_API)


def error(request: Request, status: int, detail: str) -> Response:
    """An OPTIMADE error response: JSON:API errors with status, title and detail."""
    title = _TITLES.get(status, "Error")
    body = ErrorResponse(
        meta=meta(request, 0),
        errors=[OptimadeError(status=str(status), title=title, detail=detail)],
    )
    return json_response(body, status)


def root_link(request: Request) -> LinksResource:
    """`links`: the root of this implementation, its unversioned base (no index meta-database)."""
    return LinksResource(
        id=PROVIDER,
        type="links",
        attributes=LinksResourceAttributes(
            name="crystaldb",
            description="crystal structures with DFT band gaps, in PostgreSQL",
            base_url=f"{str(request.base_url).rstrip('/')}/optimade",
            homepage=None,
            link_type="root",
        ),
    )


def info_resource(request: Request) -> BaseInfoResource:
    """The base `info` resource."""
    return BaseInfoResource(
        attributes=BaseInfoAttributes(
            api_version=API_VERSION,
            available_api_versions=[{"url": f"{base_url(request)}/", "version": API_VERSION}],
            formats=["json"],
            available_endpoints=["info", "links", "structures", "versions"],
            entry_types_by_format={"json": ["structures"]},
            is_index=False,
        )
    )


def structures_info(
    provided: dict[str, tuple[str, str, str | None]] = PROVIDER_FIELDS,
) -> EntryInfoResource:
    """`info/structures`: every property served, its description, type and unit."""
    described = StructureResourceAttributes.model_fields
    properties: dict[str, dict[str, Any]] = {}
    for name, kind in STANDARD_FIELDS.items():
        field = described.get(name)
        text = (field.description if field else None) or name
        sortable = name in SORTABLE
        properties[name] = {"description": text.split("\n")[0], "type": kind, "sortable": sortable}
    for name, (text, kind, unit) in provided.items():
        sortable = name in SORTABLE
        properties[name] = {"description": text, "type": kind, "sortable": sortable, "unit": unit}
    return EntryInfoResource(
        id="structures",
        type="info",
        formats=["json"],
        description="crystal structures",
        properties=properties,
        output_fields_by_format={"json": list(properties)},
    )
