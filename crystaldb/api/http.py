"""The HTTP rules a request meets before GraphQL sees it: bounded bodies, uploads only with a
live API token, and cross-origin calls only from the configured origins.

A body is read here, at most up to its limit, and handed on whole; a larger one is refused
with 413 as soon as its declared length or the bytes received pass the limit, so no client can
make the server hold (or, for multipart uploads, spool to disk) more than the limit. An upload
is a mutation's (`predictBandGap(file:)`), and mutations need a token: a multipart request
without a live one is refused with 401 before a byte of its body is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crystaldb.api.auth import TokenRequired, parse_authorization, require
from crystaldb.platform.database import Database
from crystaldb.schema.tokens import verify_token

BODY_SETTING = "CRYSTALDB_API_MAX_BODY"
UPLOAD_SETTING = "CRYSTALDB_API_MAX_UPLOAD"
_WITH_BODY = {"POST", "PUT", "PATCH"}


def _refusal(status: int, message: str, code: str, **extensions: Any) -> JSONResponse:
    """A GraphQL-shaped error answer for a request refused before GraphQL."""
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=status)


def _too_large(limit: int, setting: str) -> JSONResponse:
    """413, naming the limit and its setting."""
    return _refusal(
        413,
        f"the request body is over the limit of {limit:,} bytes ({setting}): send structures "
        "one at a time, and page through results with `first` and `after`",
        "PAYLOAD_TOO_LARGE",
        maxBytes=limit,
    )


class BoundedRequests:
    """ASGI middleware: body limits, and the token check of uploads (see the module)."""

    def __init__(self, app: ASGIApp, db: Database, max_body: int, max_upload: int) -> None:
        self.app = app
        self.db = db
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass on requests without a body; read and bound the others first."""
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        limit, setting = (
            (self.max_upload, UPLOAD_SETTING) if multipart else (self.max_body, BODY_SETTING)
        )
        if multipart and (refused := await self._unauthorised(headers)) is not None:
            await refused(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, setting)(scope, receive, send)
            return
        body = await _read(receive, limit)
        if body is None:
            await _too_large(limit, setting)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _unauthorised(self, headers: Headers) -> JSONResponse | None:
        """401 unless the request carries a live API token."""
        bearer, other = parse_authorization(headers.get("authorization"))
        check = None
        if bearer is not None:
            check = await asyncio.to_thread(verify_token, self.db, bearer)
        try:
            require(check, other)
        except TokenRequired as refused:
            return _refusal(401, f"uploads are for mutations: {refused}", "UNAUTHENTICATED")
        return None


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
