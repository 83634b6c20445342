"""The jupyter_client kernel provisioner that launches kernels inside the sandbox.

The provisioner is jupyter_client's seam for *how* a process is launched; the local
sandbox's manager (kernels/local.py) sets it on its AsyncKernelManager. Kernels that
are not local processes (a gateway's, a container's) are another manager class
(kernels/manager.py), not another provisioner. It reuses LocalProvisioner for process
management and only rewrites the command and environment with the plan from
:class:`SandboxConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Instance, Unicode

from ..sandbox.cgroups import release_cgroup
from ..sandbox.config import LaunchPlan, SandboxConfig


class SandboxProvisioner(LocalProvisioner):
    """Launch the kernel command through the bubblewrap plan of ``sandbox``."""

    sandbox = Instance(SandboxConfig, help="The sandbox configuration to launch with.")
    session_dir = Unicode(help="Per-session folder: connection file, ipc sockets.")
    work_dir = Unicode(help="Writable work folder, the kernel's HOME and cwd.")
    socket_dir = Unicode(
        "",
        help="Folder of the ipc sockets, writable inside. When set, the session folder "
        "is read-only inside; empty keeps the whole session folder writable.",
    )
    plan: LaunchPlan | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        self._release_cgroups()
        self.plan = self.sandbox.plan(
            list(kwargs["cmd"]),
            Path(self.session_dir),
            Path(self.work_dir),
            Path(self.socket_dir) if self.socket_dir else None,
        )
        kwargs["cmd"] = self.plan.argv
        kwargs["env"] = self.plan.env
        kwargs["cwd"] = self.work_dir
        # Not independent, jupyter_client adds JPY_PARENT_PID to bwrap's own
        # environment. bwrap's --die-with-parent already ties the kernel's life
        # to ours; unsandboxed kernels keep the parent-pid watch instead.
        kwargs["independent"] = self.sandbox.mode == "bwrap"
        return kwargs

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        self._release_cgroups()

    def _release_cgroups(self) -> None:
        # Also kills what the old kernel left (a fork bomb's children), so a
        # restarted kernel never shares its pids budget with them.
        if self.plan is not None:
            for path in self.plan.cgroups:
                release_cgroup(path)
