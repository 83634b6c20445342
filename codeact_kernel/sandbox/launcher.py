"""Kernelspec wrapper: a sandboxed ipykernel behind the frontend's TCP ports.

A Jupyter frontend (JupyterLab, nbclient, jupyter_client) launches a
kernelspec with a TCP connection file.  This wrapper, run as
``python -m codeact_kernel.launcher -f {connection_file}``:

1. writes an inner connection file with ``transport: ipc`` and its sockets in
   a fresh session folder (same key),
2. starts ipykernel on it inside bubblewrap, through :meth:`SandboxConfig.plan`,
3. copies bytes between the frontend's five TCP ports and the five unix
   sockets.  ZMTP is the same on both transports, so the copy is transparent.

With ``--review`` (the ``codeact-review`` kernelspec, for re-running traces) the kernel
gets an HMAC key of its own instead of the frontend's, and step 3 is the re-signing relay
of :mod:`.relay`: every message is checked and re-signed, and the kernel's MIME bundles
pass the output firewall, so neither the frontend's key nor active content crosses.

It needs no provisioner, so it works whichever environment the frontend runs
from: the kernelspec names this interpreter by absolute path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_core.paths import jupyter_config_path
from traitlets import Bool, Float, Instance, List, Unicode, default
from traitlets.config import Application

from ..errors import SandboxUnavailable
from ..render.firewall import OutputFirewall
from .bridge import SocketBridge
from .config import SandboxConfig
from .dirs import (
    default_runtime_dir,
    make_session_dir,
    release_cgroups,
    remove_tree,
    sweep_stale_sessions,
)
from .interrupt import send_interrupt_request
from .workdir import WorkFolderLease

if TYPE_CHECKING:
    from .relay import SigningRelay

# jupyter_client and zmq are imported only where they are used, after the
# kernel has been spawned: they would add about 0.12 s to every kernel start.

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
# Unix socket paths are limited to 108 bytes (sun_path), ZMQ's ipc included.
MAX_SOCKET_PATH = 100
DEFAULT_KERNEL_CMD = ["{python}", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


class SandboxLauncher(Application):
    """Start ipykernel in the sandbox and bridge a frontend's TCP ports to it."""

    name = "codeact-sandbox"
    description = (
        "Launch a sandboxed IPython kernel for a Jupyter frontend: the kernel runs in "
        "bubblewrap over ipc sockets, and its frontend's TCP ports are bridged to them."
    )
    # Class-level tables are how traitlets Applications declare their CLI.
    classes = [SandboxConfig, OutputFirewall]  # noqa: RUF012
    aliases: dict[str, Any] = {  # noqa: RUF012
        "f": "SandboxLauncher.connection_file",
        "runtime-dir": "SandboxLauncher.runtime_dir",
        "work-dir": "SandboxLauncher.work_dir",
        "config": "SandboxLauncher.config_file",
        "log-level": "Application.log_level",
    }
    flags: dict[str, Any] = {  # noqa: RUF012
        "debug": ({"Application": {"log_level": 10}}, "Log debugging details."),
        "unsafe-no-sandbox": (
            {"SandboxConfig": {"mode": "none"}},
            "Run the kernel WITHOUT the OS sandbox (explicit, loudly-warned opt-in).",
        ),
        "review": (
            {"SandboxLauncher": {"review": True}},
            "Filter the kernel's outputs and re-sign every message (for re-running traces).",
        ),
    }

    connection_file = Unicode(
        "", help="Connection file written by the frontend (the kernelspec's {connection_file})."
    ).tag(config=True)
    runtime_dir = Unicode(
        help="Host folder holding one sub-folder per kernel (inner connection file, ipc "
        "sockets, default work folder). Keep it short: unix socket paths are limited to "
        "about 100 bytes."
    ).tag(config=True)
    work_dir = Unicode(
        "",
        help="Writable work folder of the kernel (its HOME and cwd). Empty means a fresh "
        "folder inside the session folder, removed when the kernel exits.",
    ).tag(config=True)
    kernel_cmd = List(
        Unicode(),
        default_value=DEFAULT_KERNEL_CMD,
        help="Command that runs the kernel inside the sandbox. '{python}' is this "
        "interpreter and '{connection_file}' the inner (ipc) connection file.",
    ).tag(config=True)
    kernel_connect_timeout = Float(
        60.0,
        help="Seconds a frontend connection waits for the kernel to bind its sockets.",
    ).tag(config=True)
    terminate_grace = Float(
        2.0, help="Seconds the sandbox gets to exit after SIGTERM before it is killed."
    ).tag(config=True)
    interrupt_timeout = Float(
        5.0,
        help="Seconds to wait for the kernel's interrupt_reply when SIGINT is turned into "
        "an interrupt_request.",
    ).tag(config=True)
    config_file = Unicode(
        "", help="An explicit config file, loaded after the ones found on the Jupyter path."
    ).tag(config=True)
    config_file_name = Unicode(
        "codeact_sandbox_config",
        help="Base name of config files (.py or .json) searched in the Jupyter config "
        "folders (`jupyter --paths`). The current folder is deliberately not searched: it "
        "is the notebook's folder, and must not be able to weaken the sandbox.",
    ).tag(config=True)
    review = Bool(
        False,
        help="Relay messages by re-signing them instead of copying bytes: the kernel gets "
        "an HMAC key of its own (the frontend's never enters the sandbox), and its outputs "
        "pass the output firewall (OutputFirewall) before the frontend renders them. For "
        "re-running traces, whose outputs a frontend would otherwise trust.",
    ).tag(config=True)
    sandbox = Instance(SandboxConfig, help="Isolation and limits of the kernel.")

    @default("sandbox")
    def _default_sandbox(self) -> SandboxConfig:
        return SandboxConfig(parent=self)

    @default("runtime_dir")
    def _default_runtime_dir(self) -> str:
        return default_runtime_dir()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._info: dict[str, Any] = {}
        self._stopping: asyncio.Future[None] | None = None
        self._terminating = False
        self._kernel_key = ""
        self._lease: WorkFolderLease | None = None

    def initialize(self, argv: list[str] | None = None) -> None:
        self.parse_command_line(argv)
        # Files on the Jupyter path first (the first entry wins), then --config;
        # the command line keeps priority over both.
        self.load_config_file(self.config_file_name, path=jupyter_config_path())
        if self.config_file:
            folder, name = os.path.split(os.path.abspath(self.config_file))
            self.load_config_file(name, path=[folder])
        if not self.connection_file:
            raise SystemExit(f"{self.name}: missing -f CONNECTION_FILE")

    def start(self) -> None:
        sys.exit(self.run())

    def run(self) -> int:
        """Run the kernel to completion and return the exit status to propagate."""
        try:
            self.sandbox.check()
        except SandboxUnavailable as exc:
            sys.stderr.write(f"{self.name}: cannot start the sandboxed kernel: {exc}\n")
            return 1
        return asyncio.run(self._run())

    async def _run(self) -> int:
        self._info = _read_connection_file(self.connection_file)
        self._kernel_key = (secrets.token_hex(32) if self.review
                            else str(self._info.get("key", "")))
        runtime = Path(self.runtime_dir)
        self.session_dir = make_session_dir(runtime)
        self._install_signal_handlers()
        cgroups: list[Path] = []
        bridge = SocketBridge(self.kernel_connect_timeout)
        relay: SigningRelay | None = None
        egress = None
        try:
            egress = self.sandbox.start_egress_proxy(self.session_dir, self.log)
            # Only the socket and work folders are writable inside: the kernel
            # cannot rewrite its connection file.
            sockets = self.session_dir / "ipc"
            sockets.mkdir(mode=0o700)
            inner = self._write_inner_connection_file(self.session_dir, sockets)
            work = self._prepare_work_dir(self.session_dir)
            cmd = [a.format(python=sys.executable, connection_file=inner) for a in self.kernel_cmd]
            plan = self.sandbox.plan(cmd, self.session_dir, work, sockets)
            cgroups = plan.cgroups
            self.log.info("kernel isolation: %s", "; ".join(plan.isolation))
            relay = await self._listen(bridge, sockets)
            env = dict(plan.env)
            if self.sandbox.mode == "none":
                # No bwrap --die-with-parent here: let ipykernel watch this process.
                env["JPY_PARENT_PID"] = str(os.getpid())
            self._proc = await asyncio.create_subprocess_exec(
                *plan.argv, env=env, cwd=str(work), stdin=asyncio.subprocess.DEVNULL,
                # A group signal (killpg) from the frontend must reach only this
                # launcher: a SIGINT delivered to bwrap would kill the kernel.
                start_new_session=True,
            )  # fmt: skip
            if self._terminating:
                await self._stop_kernel()
            self._sweep(runtime)
            status = await self._proc.wait()
        finally:
            await bridge.close()
            if relay is not None:
                await relay.close()
            await self._stop_kernel()
            if egress is not None:
                egress.stop()
            release_cgroups(cgroups)
            if self._lease is not None:
                self._lease.give_back()
            remove_tree(self.session_dir)
        self.log.info("kernel exited with status %s", status)
        return status if status >= 0 else 128 - status

    def _sweep(self, runtime: Path) -> None:
        """Remove leftovers of launchers that were SIGKILLed, while the kernel boots."""
        try:
            sweep_stale_sessions(runtime, self.sandbox)
        except OSError as exc:
            self.log.warning("could not sweep stale sessions in %s: %s", runtime, exc)

    def _write_inner_connection_file(self, session_dir: Path, sockets: Path) -> str:
        ip = str(sockets / "kernel")
        if len(ip) + 3 > MAX_SOCKET_PATH:
            raise SandboxUnavailable(
                f"the socket path {ip}-N is too long for unix sockets; "
                "configure a shorter SandboxLauncher.runtime_dir"
            )
        info: dict[str, Any] = {f"{c}_port": i for i, c in enumerate(CHANNELS, start=1)}
        info.update(
            ip=ip,
            key=self._kernel_key,
            transport="ipc",
            signature_scheme=self._info.get("signature_scheme", "hmac-sha256"),
            kernel_name=self._info.get("kernel_name", ""),
        )
        info.update((k, v) for k, v in self._info.items() if k.startswith("curve_"))
        path = session_dir / "kernel.json"
        # Owner-only from the first byte: it holds the HMAC key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=1)
        return str(path)

    def _prepare_work_dir(self, session_dir: Path) -> Path:
        work = Path(self.work_dir).resolve() if self.work_dir else session_dir / "work"
        # SandboxConfig.plan hands a folder made here to the sandbox uid when we are
        # root; a user's folder is only lent, and given back as it was.
        work.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.work_dir and self.sandbox.mode == "bwrap":
            uid = self.sandbox.sandbox_uid if os.geteuid() == 0 else None
            self._lease = WorkFolderLease(work, session_dir, uid)
            self.log.info("work folder %s: %s", work, self._lease.lend())
        return work

    async def _listen(self, bridge: SocketBridge, sockets: Path) -> SigningRelay | None:
        """Serve the frontend's endpoints: all five by the byte bridge, or in review mode
        the heartbeat (unsigned) by the bridge and the rest by the re-signing relay."""
        transport = self._info.get("transport", "tcp")
        ip = self._info.get("ip") or "127.0.0.1"
        if transport == "tcp" and ip == "*":
            ip = "0.0.0.0"  # ZMQ's spelling of every interface
        relayed = [c for c in CHANNELS if c != "hb"] if self.review else []
        for i, name in enumerate(CHANNELS, start=1):
            if name not in relayed:
                port = int(self._info[f"{name}_port"])
                await bridge.listen(transport, ip, port, sockets / f"kernel-{i}")
        if not relayed:
            return None
        from .relay import Signer, SigningRelay

        scheme = self._info.get("signature_scheme", "hmac-sha256")
        firewall = OutputFirewall(parent=self)
        if firewall.trusted:
            self.log.warning("OutputFirewall.trusted is ignored by the review relay")
            firewall.trusted = False
        relay = SigningRelay(Signer(str(self._info.get("key", "")).encode(), scheme),
                             Signer(self._kernel_key.encode(), scheme), firewall, self.log)
        sep = ":" if transport == "tcp" else "-"
        await relay.start(
            {c: f"{transport}://{ip}{sep}{self._info[f'{c}_port']}" for c in relayed},
            {c: f"ipc://{sockets}/kernel-{CHANNELS.index(c) + 1}" for c in relayed},
        )
        return relay

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_terminate, signum)
        # Interrupts are messages for this kernelspec; a stray SIGINT (a frontend
        # set to signal mode, a Ctrl-C) becomes one instead of killing the kernel.
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)

    def _on_terminate(self, signum: int) -> None:
        self.log.info("received %s: stopping the kernel", signal.Signals(signum).name)
        self._terminating = True
        self._stopping = asyncio.ensure_future(self._stop_kernel())

    def _on_interrupt(self) -> None:
        if self._proc is None or self.session_dir is None:
            return  # nothing to interrupt yet
        endpoint = f"ipc://{self.session_dir / 'ipc' / 'kernel'}-{CHANNELS.index('control') + 1}"
        key = self._kernel_key.encode()
        scheme = self._info.get("signature_scheme", "hmac-sha256")
        loop = asyncio.get_running_loop()
        loop.run_in_executor(
            None, send_interrupt_request, endpoint, key, scheme, self.interrupt_timeout
        )

    async def _stop_kernel(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.terminate_grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _read_connection_file(path: str) -> dict[str, Any]:
    with open(path) as f:
        info: dict[str, Any] = json.load(f)
    missing = [c for c in CHANNELS if f"{c}_port" not in info]
    if missing:
        raise SandboxUnavailable(f"connection file {path} lacks ports for {missing}")
    return info


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m codeact_kernel.launcher``."""
    app = SandboxLauncher()
    app.initialize(argv)
    try:
        return app.run()
    except SandboxUnavailable as exc:
        sys.stderr.write(f"{app.name}: cannot start the sandboxed kernel: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
