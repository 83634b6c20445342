"""Network egress by allow-list: the sandbox reaches the domains named, nothing else.

``policy`` decides (domains, ports, methods, addresses, pins), ``wire`` reads
HTTP heads and TLS ClientHellos, ``proxy`` is the host-side HTTP(S) proxy on a
unix socket in the session folder, and ``settings`` holds the SandboxConfig
traits and what they add to a launch plan. The loopback bridge inside the
sandbox is code sent into it, so it lives in codeact_kernel/kernel_side/.
"""

from .policy import Decision, EgressPolicy
from .proxy import EgressProxy, EgressRecord
from .settings import EgressSettings, egress_socket_path

__all__ = ["Decision", "EgressPolicy", "EgressProxy", "EgressRecord", "EgressSettings",
           "egress_socket_path"]
