"""Where the tests' real inputs live (the one definition), and a child-process runner for code
that might crash.

The default run reads only what the repository holds: the package's sample (SAMPLE) and
tests/data (TEST_DATA). The larger corpus in ../shared/data (SHARED_DATA) is for tests marked
`shared`, which skip with the reason when it is absent (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "crystaldb" / "data" / "sample"
TEST_DATA = REPO / "tests" / "data"
MOLECULAR_XYZ = TEST_DATA / "molecular-crystals" / "molecular_crystals.xyz"
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_MISSING = f"the shared real-data folder {SHARED_DATA} is not available (a bare clone)"

# spglib 2.x warns on every call until its new error handling becomes the default; the
# ingestion code handles both conventions, so the warning is noise in these tests.


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
