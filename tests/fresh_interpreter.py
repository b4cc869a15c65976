"""Call a test helper in a fresh Python process: CPython 3.11's ``ast.parse`` can fail with
"AST constructor recursion depth mismatch" in a test process whose recursion counter other
tests (asyncio tasks torn down by Pulumi mocks) left skewed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def call_in_fresh_interpreter(module: str, function: str, folder: Path) -> Any:
    """``module.function(folder)`` in its own process; its result must be JSON-serializable."""
    code = (
        "import json, sys; from pathlib import Path; "
        f"from {module} import {function}; "
        f"print(json.dumps({function}(Path(sys.argv[1]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)
