"""Release references: one rule (split at the first ':') that every release can be named by."""

from __future__ import annotations

import pytest

from crystaldb.schema.releases import ReleaseError, ReleaseRef, check_new_release


@pytest.mark.parametrize(
    ("text", "name", "version"),
    [
        ("omdb-gap1", "omdb-gap1", None),
        ("omdb-gap1:1.1", "omdb-gap1", "1.1"),
        ("beta:x:1", "beta", "x:1"),  # versions may hold ':', names never do
        ("beta:", "beta", None),  # an empty version is the newest, as no version is
    ],
)
def test_a_reference_splits_at_its_first_colon(text: str, name: str, version: str | None) -> None:
    ref = ReleaseRef.parse(text)
    assert (ref.name, ref.version) == (name, version)
    assert ReleaseRef.parse(str(ref)) == ref


@pytest.mark.parametrize(("name", "version"), [("beta", "x:1"), ("omdb-gap1", "1.1")])
def test_every_release_that_can_be_created_is_named_back(name: str, version: str) -> None:
    check_new_release(name, version)
    assert ReleaseRef.parse(f"{name}:{version}") == ReleaseRef(name, version)


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("beta:x", "1", "NAME 'beta:x': a release name cannot contain ':', since beta:x:1 would"
         " name release 'beta', version 'x:1'"),
        ("", "1", "NAME: a release needs a non-empty name"),
        ("beta", "", "--version: a release needs a non-empty version"),
    ],
)  # fmt: skip
def test_names_a_reference_could_not_name_back_are_refused(
    name: str, version: str, message: str
) -> None:
    with pytest.raises(ReleaseError) as error:
        check_new_release(name, version)
    assert str(error.value) == message


def test_the_refusal_names_the_argument_it_came_from() -> None:
    with pytest.raises(ReleaseError, match=r"^--release-name 'a:b': "):
        check_new_release("a:b", "1", "--release-name")
