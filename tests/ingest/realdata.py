"""Where the real test inputs live, and a child-process runner for code that might crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLE = REPO / "crystaldb" / "data" / "sample"

# spglib 2.x warns on every call until its new error handling becomes the default; the
# ingestion code handles both conventions, so the warning is noise in these tests.
SPGLIB_WARNING = "ignore:Set OLD_ERROR_HANDLING:DeprecationWarning"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run code in a child interpreter, so a native crash cannot take the test session down."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
