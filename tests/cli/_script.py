"""Where the installed console script is, and how to run it (optionally obeying file permissions as root)."""

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path


def console_script() -> str:
    """The ``layer-sim`` script installed beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "layer-sim"
    found = str(beside) if beside.is_file() else shutil.which("layer-sim")
    assert found, "the layer-sim console script is not installed: pip install -e '.[test]'"
    return found


# Linux: prctl(PR_CAPBSET_DROP, cap). Root bypasses permission bits through these two capabilities;
# without them in the bounding set, an exec'd root process obeys rwx bits like any user.
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _obey_permissions() -> None:  # runs in the child, between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run(*args, obey_permissions: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the console script; ``obey_permissions``: even as root, file permission bits apply."""
    drop = obey_permissions and os.geteuid() == 0
    return subprocess.run(
        [console_script(), *map(str, args)], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "100", **(env or {})}, preexec_fn=_obey_permissions if drop else None,
        timeout=300,
    )  # fmt: skip
