"""Reading an input file safely: size cap, binary and encoding checks, content hash."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from crystaldb.ingest.records import IngestError, Reason

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024

# Bytes that never occur in a text structure file: C0 controls other than tab, LF, VT, FF, CR
# and the DOS end-of-file mark Ctrl-Z (0x1A, which old CIFs do carry), plus DEL.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 26)) + b"\x7f"
_SNIFF_BYTES = 8192
_MAX_CONTROL_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class TextFile:
    """A file's decoded text plus the hash of its bytes (the `sources.sha256` column)."""

    path: str
    text: str
    sha256: str
    size: int


def sha256_bytes(data: bytes) -> str:
    """Content hash, so the same file ingested twice is recognised whatever its name."""
    return hashlib.sha256(data).hexdigest()


def check_size(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> int:
    """Refuse oversized files before reading them, so a stray dump cannot exhaust memory."""
    size = os.stat(path).st_size
    if size > max_bytes:
        raise IngestError(
            Reason.FILE_TOO_LARGE,
            f"{path}: file is {size:,} bytes, over the limit of {max_bytes:,} bytes",
        )
    return size


def check_text(data: bytes, path: str) -> str:
    """Decode UTF-8 (BOM allowed) and refuse binary content with the offending offset."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise IngestError(Reason.BINARY, f"{path}: binary content (NUL byte at offset {nul})")
    head = data[:_SNIFF_BYTES]
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if head and controls / len(head) > _MAX_CONTROL_FRACTION:
        raise IngestError(
            Reason.BINARY,
            f"{path}: binary content ({controls} control bytes in the first {len(head)} bytes)",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        context = data[max(0, error.start - 20) : error.start + 1]
        raise IngestError(
            Reason.NOT_UTF8,
            f"{path}: not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start}"
            f" (after {context[:-1]!r}); {error.reason}",
        ) from error


def read_text_file(
    path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> TextFile:
    """Read a structure file as text or raise IngestError with the reason it cannot be."""
    name = str(path)
    size = check_size(path, max_bytes)
    data = Path(path).read_bytes()
    return TextFile(path=name, text=check_text(data, name), sha256=sha256_bytes(data), size=size)
