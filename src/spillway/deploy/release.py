"""`spillway deploy`: install the new release into the stack's venv, then reload.

The install is pip's, in the venv this `spillway` runs from (the stack's): what the
operator names, or, when none, this checkout again as an editable install (its new
dependencies). The reload then migrates and brings every program onto the new code
(spillway/deploy/reload.py). A failed install reloads nothing, and neither does a failed
migration (the reload refuses before it signals any program).
"""

import subprocess
import sys
from pathlib import Path

from spillway.deploy.reload import ReloadFailed
from spillway.deploy.reload import request_reload
from spillway.deploy.reload import up_process
from spillway.deploy.run_dir import RunDir

# The source checkout this spillway was installed from, if it was (an editable install).
CHECKOUT = Path(__file__).resolve().parents[3]


def default_requirements() -> list[str]:
    """This checkout, editable, if spillway runs from one.

    :raise ReloadFailed: it does not: the operator must name what to install.
    """
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "src" / "spillway").is_dir():
        return ["--editable", str(CHECKOUT)]
    raise ReloadFailed("spillway is not run from a checkout: name what to install")


def deploy(run_dir: RunDir, pip_args: list[str], timeout: float) -> list[str]:
    """Install ``pip_args`` (or this checkout), then reload; what was done, a line each.

    :raise ReloadFailed: no stack runs, the install failed, or the reload did.
    """
    up_process(run_dir)  # no stack: say so before installing anything
    args = pip_args or default_requirements()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["it failed"]
        raise ReloadFailed(f"pip install {' '.join(args)} failed, nothing reloaded: {lines[-1]}")
    return [f"installed: {' '.join(args)}", request_reload(run_dir, timeout)]
