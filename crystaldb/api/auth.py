"""API tokens on requests: queries are public, mutations need `Authorization: Bearer <token>`.

A mutation asks for a token with the permission class::

    @strawberry.mutation(permission_classes=[RequiresToken])
    async def predict_band_gap(self, info: Info, cif: str) -> ...:
        token = await authenticate(info.context)  # checked once per request: no new query
        ...  # token.name can go into the run's parameters, for provenance

The check runs once per request, only when such a field is asked for, and stamps the
token's last use.
"""

from __future__ import annotations

from typing import Any, ClassVar

from strawberry.permission import BasePermission

from crystaldb.api.errors import ApiError
from crystaldb.api.loaders import Context
from crystaldb.schema.tokens import TokenCheck

SCHEME = "bearer"
HOW = (
    "create one with `crystaldb token create NAME` and send it as the header "
    "`Authorization: Bearer <token>`"
)


class TokenRequired(ApiError):
    """The request needs a live API token and did not send one."""

    extensions: ClassVar[dict[str, Any]] = {"code": "UNAUTHENTICATED"}


def parse_authorization(header: str | None) -> tuple[str | None, str | None]:
    """(token, None) for `Bearer <token>`; (None, header) for any other header; (None, None)."""
    if header is None or not header.strip():
        return None, None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == SCHEME and token and " " not in token:
        return token, None
    return None, header


def require(check: TokenCheck | None, authorization: str | None = None) -> TokenCheck:
    """The check of a live token, or TokenRequired saying what was wrong and what to do."""
    if check is not None and check.status == "valid":
        return check
    if check is None and authorization is not None:
        reason = "the Authorization header is not of the form `Bearer <token>`"
    elif check is None:
        reason = "this mutation needs an API token"
    elif check.status == "revoked":
        when = f" at {check.revoked_at:%Y-%m-%d %H:%M:%S %Z}" if check.revoked_at else ""
        reason = f"the API token {check.name!r} was revoked{when}; this mutation needs a live one"
    else:
        reason = "the API token sent is not known to this server; this mutation needs a valid one"
    raise TokenRequired(f"{reason}: {HOW}")


async def authenticate(context: Context) -> TokenCheck:
    """The request's live token, or TokenRequired."""
    return require(await context.check_token(), context.authorization)


class RequiresToken(BasePermission):
    """Field permission: the request must carry a live API token (see the module docstring).

    A missing, malformed, unknown or revoked token fails the field with a TokenRequired
    error (extensions.code UNAUTHENTICATED) that says which it was and how to get a token.
    """

    message = f"this mutation needs an API token: {HOW}"
    error_extensions = TokenRequired.extensions

    async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        """True for a live token; raises TokenRequired (with the reason) otherwise."""
        await authenticate(info.context)
        return True
