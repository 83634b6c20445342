"""The OS sandbox around a kernel: bubblewrap plan and limits (``config``), cgroups, the
seccomp filter, session folders (``dirs``), the kernelspec ``launcher`` with its socket
``bridge``, the ``kernelspec`` installer and ``doctor``.

Imports no jupyter_client, zmq or litellm: the launcher runs at every kernel start.
"""

from .config import SandboxConfig

__all__ = ["SandboxConfig"]
