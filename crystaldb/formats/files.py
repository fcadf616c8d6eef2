"""Reading an input file safely: size cap, binary and encoding checks, content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from crystaldb.core.records import IngestError, Reason, Rejection
from crystaldb.core.validate import DEFAULT_MAX_FILE_BYTES

# Bytes that never occur in a text structure file: C0 controls other than tab, LF, VT, FF, CR
# and the DOS end-of-file mark Ctrl-Z (0x1A, which old CIFs do carry), plus DEL.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 26)) + b"\x7f"
_SNIFF_BYTES = 8192
_MAX_CONTROL_FRACTION = 0.01


@dataclass(frozen=True)
class Payload:
    """One input file's bytes, named as the user will see it (archive!member for members)."""

    name: str
    data: bytes


def sha256_bytes(data: bytes) -> str:
    """Content hash, so the same file ingested twice is recognised whatever its name."""
    return hashlib.sha256(data).hexdigest()


def read_input(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Payload | Rejection:
    """A plain file's bytes, its size checked first so a stray dump cannot exhaust memory."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return too_large(str(path), size, max_bytes)
        return Payload(str(path), path.read_bytes())
    except OSError as exc:
        return Rejection(str(path), None, str(Reason.PARSE_ERROR), f"{path}: cannot read: {exc}")


def too_large(name: str, size: int, max_bytes: int) -> Rejection:
    """The refusal of an input over the size limit, for plain files and archive members."""
    message = f"{name}: file is {size:,} bytes, over the limit of {max_bytes:,} bytes"
    return Rejection(name, None, str(Reason.FILE_TOO_LARGE), message)


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
