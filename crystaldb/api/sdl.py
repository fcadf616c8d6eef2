"""The committed SDL of the schema: `python -m crystaldb.api.sdl` rewrites it after a change."""

from __future__ import annotations

from pathlib import Path

from crystaldb.api.schema import schema

SDL_PATH = Path(__file__).with_name("schema.graphql")
REGENERATE = "python -m crystaldb.api.sdl"


def sdl() -> str:
    """The schema as GraphQL SDL, newline-terminated as committed."""
    return str(schema) + "\n"


def main() -> None:
    """Write the SDL next to this module, for clients and reviewers to diff."""
    SDL_PATH.write_text(sdl(), encoding="utf-8")
    print(f"wrote {SDL_PATH}")


if __name__ == "__main__":
    main()
