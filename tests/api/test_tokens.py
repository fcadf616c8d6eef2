"""API tokens: stored as digests, checked per request from `Authorization: Bearer`, managed
with `crystaldb token`; mutations need one (RequiresToken), queries do not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from sqlalchemy import select

from crystaldb.api.app import create_app
from crystaldb.api.auth import RequiresToken, authenticate, parse_authorization
from crystaldb.api.schema import build_schema
from crystaldb.api.types import Info
from crystaldb.schema.tokens import (
    TOKEN_PREFIX,
    ApiToken,
    TokenError,
    create_token,
    digest,
    list_tokens,
    revoke_token,
    verify_token,
)
from tests.api.conftest import Api, serving
from tests.conftest import DatabaseFactory, run_cli

HOW = (
    "create one with `crystaldb token create NAME` and send it as the header "
    "`Authorization: Bearer <token>`"
)


def _name(prefix: str = "t") -> str:
    """A token name no other test uses (the database is shared by the package)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_only_the_digest_is_stored(api: Api) -> None:
    """The token is shown once; the row holds its sha256, never the token."""
    name = _name()
    token = create_token(api.db, name)
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    with api.db.session() as session:
        row = session.execute(select(ApiToken.__table__).where(ApiToken.name == name)).one()
    assert row.token_sha256 == digest(token)
    assert token not in repr(tuple(row))
    assert row.last_used_at is None and row.revoked_at is None
    assert create_token(api.db, _name()) != token


def test_verify_valid_unknown_revoked(api: Api) -> None:
    """A live token is valid (its use stamped); a made-up one unknown; a revoked one revoked."""
    name = _name()
    token = create_token(api.db, name)
    check = verify_token(api.db, token)
    assert (check.status, check.name) == ("valid", name)
    (listed,) = [t for t in list_tokens(api.db) if t.name == name]
    assert listed.last_used_at is not None
    assert verify_token(api.db, token + "x").status == "unknown"
    revoked, newly = revoke_token(api.db, name)
    assert newly and revoked.revoked_at is not None
    check = verify_token(api.db, token)
    assert (check.status, check.name, check.revoked_at) == ("revoked", name, revoked.revoked_at)
    assert revoke_token(api.db, name)[1] is False  # revoking again changes nothing


def test_token_errors(api: Api) -> None:
    """Duplicate names (revoked ones included), bad names and unknown names are refused."""
    name = _name()
    create_token(api.db, name)
    revoke_token(api.db, name)
    with pytest.raises(TokenError, match="already exists"):
        create_token(api.db, name)
    with pytest.raises(TokenError, match="use 1-100 letters, digits"):
        create_token(api.db, "has space")
    with pytest.raises(TokenError, match="no token named 'nobody-"):
        revoke_token(api.db, _name("nobody"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        ("Bearer cdb_abc", ("cdb_abc", None)),
        ("bearer   cdb_abc  ", ("cdb_abc", None)),
        ("Basic dXNlcjpwdw==", (None, "Basic dXNlcjpwdw==")),
        ("Bearer", (None, "Bearer")),
        ("Bearer a b", (None, "Bearer a b")),
    ],
)
def test_parse_authorization(header: str | None, expected: tuple[str | None, str | None]) -> None:
    """Only `Bearer <token>` gives a token; another header is kept to say it is wrong."""
    assert parse_authorization(header) == expected


@strawberry.type
class _TestMutation:
    """Test-only: the API has no mutation yet; this one shows what RequiresToken lets through."""

    @strawberry.mutation(permission_classes=[RequiresToken])
    async def whoami(self, info: Info) -> str:
        """The name of the token the request sent."""
        check = await authenticate(info.context)
        assert check.name is not None
        return check.name


@pytest.fixture(scope="module")
def guarded(api: Api) -> Iterator[str]:
    """The real app and context, serving the real Query plus the test mutation."""
    schema = build_schema(mutation=_TestMutation)
    with serving(create_app(api.db, schema=schema)) as url:
        yield url


def _whoami(url: str, header: str | None) -> dict[str, Any]:
    """POST the guarded mutation with this Authorization header (or none)."""
    headers = {} if header is None else {"Authorization": header}
    response = httpx.post(
        f"{url}/graphql", json={"query": "mutation { whoami }"}, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_mutation_with_a_live_token(api: Api, guarded: str) -> None:
    """The context carries the header's token; the permission lets the mutation run."""
    name = _name("alice")
    token = create_token(api.db, name)
    assert _whoami(guarded, f"Bearer {token}") == {"data": {"whoami": name}}


def test_mutation_refusals_say_what_to_do(api: Api, guarded: str) -> None:
    """Missing, malformed, unknown and revoked tokens: each named, with how to get one."""
    name = _name("bob")
    token = create_token(api.db, name)
    revoke_token(api.db, name)
    cases = {
        None: f"this mutation needs an API token: {HOW}",
        "Basic dXNlcjpwdw==": "the Authorization header is not of the form `Bearer <token>`: "
        + HOW,
        "Bearer cdb_made-up": "the API token sent is not known to this server; this mutation "
        f"needs a valid one: {HOW}",
        f"Bearer {token}": f"the API token '{name}' was revoked at ",
    }
    for header, expected in cases.items():
        body = _whoami(guarded, header)
        assert body["data"] is None
        (error,) = body["errors"]
        assert error["message"].startswith(expected), (header, error["message"])
        assert error["message"].endswith(HOW)
        assert error["extensions"] == {"code": "UNAUTHENTICATED"}
        assert error["path"] == ["whoami"]


def test_queries_need_no_token(api: Api, guarded: str) -> None:
    """Queries answer with no token, and a bad header on a query is ignored."""
    query = {"query": "{ structures(first: 1) { totalCount } }"}
    for headers in ({}, {"Authorization": "Bearer cdb_made-up"}, {"Authorization": "junk"}):
        response = httpx.post(f"{guarded}/graphql", json=query, headers=headers, timeout=30)
        assert "errors" not in response.json()
        assert response.json()["data"]["structures"]["totalCount"] == len(api.rows)


@pytest.mark.slow
def test_token_commands(databases: DatabaseFactory, tmp_path: Path) -> None:
    """create prints the token alone on stdout; list never shows it; revoke ends it."""
    settings, db = databases.migrated("crystaldb_tokens", tmp_path)
    env = {
        "CRYSTALDB_DATABASE_URL": str(settings.database_url),
        "CRYSTALDB_DATA_DIR": str(tmp_path),
    }
    try:
        created = run_cli("token", "create", "ci-bot", env=env)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token.startswith(TOKEN_PREFIX) and "\n" not in token
        assert "shown only now" in created.stderr
        assert verify_token(db, token).name == "ci-bot"

        revoked = run_cli("token", "revoke", "ci-bot", env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert "token ci-bot revoked at" in revoked.stdout
        assert verify_token(db, token).status == "revoked"

        listed = run_cli("token", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert "ci-bot" in listed.stdout and "revoked" in listed.stdout
        assert token not in listed.stdout and digest(token) not in listed.stdout
    finally:
        db.dispose()
