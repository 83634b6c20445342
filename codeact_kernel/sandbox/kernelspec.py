"""The ``codeact-sandbox`` kernelspec: Jupyter frontends get the sandboxed kernel.

The spec's argv names this interpreter by absolute path, written at install
time, so a JupyterLab running from another environment (which may not even
have codeact_kernel) still starts the kernel with the Python that has it.
No provisioner is involved: a kernelspec naming a provisioner that the
frontend's environment lacks fails with "no such kernel".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "codeact-sandbox"
DISPLAY_NAME = "Python 3 (CodeAct sandbox)"
# For re-running traces: the launcher's --review mode keeps the frontend's HMAC key out of
# the sandbox and passes every output through the output firewall. Traces name it.
REVIEW_KERNEL_NAME = "codeact-review"
REVIEW_DISPLAY_NAME = "Python 3 (CodeAct review, outputs filtered)"


def kernel_json(
    python: str = sys.executable,
    display_name: str = DISPLAY_NAME,
    launcher_args: list[str] | None = None,
    review: bool = False,
) -> dict[str, Any]:
    """The kernel.json contents for a sandboxed kernel run by ``python`` (``review``: the
    filtering, re-signing launcher mode, for re-running traces)."""
    argv = [python, "-m", "codeact_kernel.sandbox.launcher", "-f", "{connection_file}"]
    if review:
        argv.append("--review")
    return {
        "argv": [*argv, *(launcher_args or [])],
        "display_name": display_name,
        "language": "python",
        # A SIGINT delivered to bubblewrap kills the kernel; interrupts are messages.
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }


def install_kernelspec(
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | None = None,
    *,
    name: str | None = None,
    display_name: str | None = None,
    python: str | None = None,
    launcher_args: list[str] | None = None,
    review: bool = False,
) -> str:
    """Install the sandboxed kernelspec and return the folder it was installed to.

    ``launcher_args`` are baked into the argv, e.g.
    ``["--SandboxConfig.memory_limit=4294967296"]`` or ``["--runtime-dir=/run/codeact"]``.
    ``review`` installs the review kernelspec (``codeact-review`` by default) instead.
    """
    # Imported here: jupyter_client brings zmq, which the sandbox package never needs.
    from jupyter_client.kernelspec import KernelSpecManager

    if sum([user, sys_prefix, prefix is not None]) > 1:
        raise ValueError("choose at most one of user, sys_prefix and prefix")
    if sys_prefix:
        prefix = sys.prefix
    name = name or (REVIEW_KERNEL_NAME if review else KERNEL_NAME)
    display_name = display_name or (REVIEW_DISPLAY_NAME if review else DISPLAY_NAME)
    spec = kernel_json(str(Path(python or sys.executable).absolute()), display_name,
                       launcher_args, review)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / name
        source.mkdir()
        (source / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        _copy_logos(source)
        installed: str = KernelSpecManager().install_kernel_spec(
            str(source), kernel_name=name, user=user, prefix=prefix
        )
    return installed


def _copy_logos(dest: Path) -> None:
    # ipykernel's logos make the sandbox look like Python in the launcher,
    # which it is; the display name tells it apart.
    try:
        import ipykernel
    except ImportError:
        return
    resources = Path(ipykernel.__file__).parent / "resources"
    for logo in resources.glob("logo-*"):
        shutil.copy(logo, dest / logo.name)


def main(argv: list[str] | None = None) -> int:
    """``codeact kernelspec install [--user|--sys-prefix|--prefix P]``."""
    parser = argparse.ArgumentParser(
        prog="codeact kernelspec", description="Manage the sandboxed Jupyter kernelspec."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser(
        "install", help="Install the codeact-sandbox kernelspec (or with --review, the "
        "codeact-review one, for re-running traces).")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="Install for the current user.")
    where.add_argument(
        "--sys-prefix", action="store_true", help="Install into this Python's prefix (venv)."
    )
    where.add_argument("--prefix", help="Install under PREFIX/share/jupyter/kernels.")
    install.add_argument("--review", action="store_true",
                         help="Install the review kernelspec (outputs filtered, messages "
                         "re-signed), which trace notebooks name.")
    install.add_argument("--name", default=None, help="Kernelspec name.")
    install.add_argument("--display-name", default=None, help="Name shown in Jupyter.")
    install.add_argument(
        "launcher_args", nargs="*",
        help="Options baked into the kernelspec, e.g. --SandboxConfig.memory_limit=4294967296 "
        "(put them after --).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    path = install_kernelspec(
        user=args.user,
        sys_prefix=args.sys_prefix,
        prefix=args.prefix,
        name=args.name,
        display_name=args.display_name,
        launcher_args=args.launcher_args,
        review=args.review,
    )
    print(f"Installed kernelspec {Path(path).name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
