"""API tokens: what lets a client call mutations; only each token's sha256 is ever stored.

A token is shown once, when `create_token` makes it; the database keeps its digest, so a
leaked database dump holds no usable token. Revoked tokens stay listed (and their names
taken), so logs that name a token keep meaning one token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, String, Text, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.core.errors import CrystaldbError
from crystaldb.platform.database import Database
from crystaldb.schema.base import Base, created_at_column

TOKEN_PREFIX = "cdb_"  # makes a crystaldb token recognisable in a leaked file or a log
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,99}")


class ApiToken(Base):
    """One API token: a name for people, the digest for the server, and its history."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("token_sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("name <> ''", name="name_not_empty"),
    )


class TokenError(CrystaldbError):
    """A token command that cannot be done as asked; the message says what to do instead."""


@dataclass(frozen=True)
class TokenCheck:
    """What a presented token turned out to be: valid (with its name), unknown or revoked."""

    status: Literal["valid", "unknown", "revoked"]
    name: str | None = None
    revoked_at: datetime | None = None


def digest(token: str) -> str:
    """The sha256 (hex) the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_name(name: str) -> str:
    """A name that prints and greps well: letters, digits and _ . @ : + -, up to 100."""
    if not NAME_PATTERN.fullmatch(name):
        raise TokenError(
            f"token name {name!r}: use 1-100 letters, digits or _ . @ : + - "
            "(starting with a letter or digit), e.g. alice-laptop"
        )
    return name


def create_token(db: Database, name: str) -> str:
    """A new token named `name`; the only time the token itself exists outside the client."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with db.session() as session:
            session.add(ApiToken(name=_check_name(name), token_sha256=digest(token)))
    except IntegrityError:
        raise TokenError(
            f"a token named {name!r} already exists (names of revoked tokens stay taken): "
            "choose another name; `crystaldb token list` shows them"
        ) from None
    return token


def list_tokens(db: Database) -> list[ApiToken]:
    """Every token, oldest first, revoked ones included."""
    with db.session() as session:
        tokens = list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
        session.expunge_all()
    return tokens


def revoke_token(db: Database, name: str) -> tuple[ApiToken, bool]:
    """Revoke the token called `name`; True if it was live until now, False if already revoked."""
    with db.session() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == name))
        if token is None:
            raise TokenError(f"no token named {name!r}: `crystaldb token list` shows them")
        newly = token.revoked_at is None
        if newly:
            token.revoked_at = session.scalar(select(func.now()))
        session.flush()
        session.expunge(token)
    return token, newly


def verify_token(db: Database, token: str) -> TokenCheck:
    """Whether a presented token is live; a live one has its last use stamped."""
    sha = digest(token)
    with db.session() as session:
        name = session.scalar(
            sql_update(ApiToken)
            .where(ApiToken.token_sha256 == sha, ApiToken.revoked_at.is_(None))
            .values(last_used_at=func.now())
            .returning(ApiToken.name)
        )
        if name is not None:
            return TokenCheck("valid", name)
        revoked = session.execute(
            select(ApiToken.name, ApiToken.revoked_at).where(ApiToken.token_sha256 == sha)
        ).first()
    if revoked is None:
        return TokenCheck("unknown")
    return TokenCheck("revoked", revoked.name, revoked.revoked_at)
