"""The prediction form (`/predict`): a structure file, a token and models in, band gaps out,
through the API's own `predictBandGap` mutation so the page and the API never disagree."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from strawberry import Schema

from crystaldb.api.web import queries
from crystaldb.api.web.gql import execute
from crystaldb.core.networks import ARCHITECTURES
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings

DEFAULT_NAME = "upload.cif"  # the suffix picks the reader: pasted text is a CIF
PREDICTING = ("krr", "ensemble", *ARCHITECTURES)  # the architectures predictBandGap can run


@dataclass
class Asked:
    """What the form sent: the token, the file, the chosen models; and what was missing."""

    token: str = ""
    file: UploadFile | None = None
    models: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def read_form(request: Request) -> Asked:
    """The posted form, with a sentence for each field that is missing or unreadable.

    The file comes as text (the page's script reads the chosen file into the form): the API
    refuses a multipart body without an Authorization header, which a browser form cannot send.
    """
    asked = Asked()
    try:
        posted = await request.form()
    except Exception as exc:  # a malformed body is the client's problem, not a 500
        asked.problems.append(f"the form could not be read: {exc}")
        return asked
    asked.token = str(posted.get("token") or "").strip()
    asked.models = [str(m) for m in posted.getlist("models") if str(m).strip()]
    text = str(posted.get("text") or "")
    name = PurePosixPath(str(posted.get("filename") or "").replace("\\", "/")).name
    if text.strip():
        data = text.encode("utf-8")
        asked.file = UploadFile(io.BytesIO(data), size=len(data), filename=name or DEFAULT_NAME)
    if not asked.token:
        asked.problems.append(
            "token: give an API token (an operator creates one with `crystaldb token create NAME`)"
        )
    if asked.file is None:
        asked.problems.append(
            "file: choose a structure file (CIF, extended XYZ, POSCAR or JSON), or paste its text"
        )
    if not asked.models:
        asked.problems.append("models: choose at least one model")
    return asked


async def models(schema: Schema, db: Database, settings: Settings | None) -> list[dict[str, Any]]:
    """The stored models the form offers (those predictBandGap can run), newest first."""
    answer = await execute(schema, db, settings, queries.MODELS, {})
    found = (answer.data or {}).get("models") or []
    return [m for m in found if m["architecture"] in PREDICTING]


async def predict(
    schema: Schema, db: Database, settings: Settings | None, asked: Asked
) -> tuple[dict[str, Any] | None, list[str]]:
    """The mutation's answer for the form, or its error messages."""
    variables = {"file": asked.file, "models": asked.models}
    answer = await execute(schema, db, settings, queries.PREDICT, variables, bearer=asked.token)
    found = (answer.data or {}).get("predictBandGap")
    return (found, []) if found and not answer.errors else (None, answer.errors or ["no answer"])


def route(
    templates: Jinja2Templates, schema: Schema, db: Database, settings: Settings | None
) -> Callable[[Request], Awaitable[Response]]:
    """The `/predict` endpoint: GET shows the form, POST predicts and shows the form again."""

    async def page(request: Request) -> Response:
        """The form and, after a POST, the predictions or what went wrong."""
        offered = await models(schema, db, settings)
        asked, result, status = Asked(), None, 200
        if request.method == "POST":
            asked = await read_form(request)
            if not asked.problems:
                result, asked.problems = await predict(schema, db, settings, asked)
            status = 400 if asked.problems else 200
        chosen = asked.models or [m["name"] for m in offered if m["architecture"] == "krr"][:1]
        context = {
            "models": offered,
            "chosen": chosen,
            "problems": asked.problems,
            "result": result,
            "filename": asked.file.filename if asked.file else DEFAULT_NAME,
        }
        return templates.TemplateResponse(request, "predict.html", context, status_code=status)

    return page
