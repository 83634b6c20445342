"""The egress settings of SandboxConfig, and what they add to a launch plan.

A mixin of SandboxConfig (so the traits are ``SandboxConfig.allowed_domains``
and so on, one owner for the sandbox's settings), kept in its own module
because the plan it contributes (environment, binds, the bridge in front of
the kernel command) is a concept of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from traitlets import Dict, Enum, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from ...errors import SandboxUnavailable
from .policy import EgressPolicy, check_pattern
from .proxy import EgressProxy

BRIDGE_SOURCE = Path(__file__).parents[2] / "kernel_side" / "egress_bridge.py"
# Where the system's CA certificates live (Debian, Fedora, Alpine...), bound read-only
# so that HTTPS can be verified inside; they are public, never secrets.
CA_STORES = ["/etc/ssl/certs", "/etc/pki/tls/certs", "/etc/pki/ca-trust", "/etc/ca-certificates",
             "/usr/share/ca-certificates"]
NO_PROXY = "localhost,127.0.0.1,::1"


def egress_socket_path(session_dir: Path) -> Path:
    """The proxy's socket: in a folder of its own, 0700, which the sandbox uid gets."""
    return session_dir / "egress" / "proxy.sock"


class EgressSettings(Configurable):
    """Network egress by allow-list: the sandbox reaches the domains named, nothing else."""

    allowed_domains = List(
        Unicode(),
        help="Domains the sandboxed code may reach over HTTP(S): exact names (data.example.org)"
        " or '*.suffix' patterns (any name under suffix, not suffix itself). Empty (the "
        "default) means no network at all. Requests go through a host-side proxy that also "
        "refuses IP addresses and names resolving to private, loopback or link-local ones.",
    ).tag(config=True)
    denied_domains = List(
        Unicode(), help="Domains refused even when allowed_domains matches them (deny wins)."
    ).tag(config=True)
    allowed_ports = List(
        Int(), default_value=[80, 443], help="Ports the sandbox may reach on allowed domains."
    ).tag(config=True)
    egress_methods = Enum(
        ["all", "read-only"], default_value="all",
        help="'all' HTTP methods, or 'read-only': GET and HEAD only. A proxy cannot see the "
        "method inside an HTTPS tunnel, so 'read-only' also refuses HTTPS (CONNECT).",
    ).tag(config=True)
    egress_resolve = Dict(
        value_trait=Unicode(),
        help="Pinned addresses, like curl --resolve: {'host:port': 'ip:port'}. A request for "
        "host:port connects to ip:port without DNS. A pin is the only way to reach a private "
        "or loopback address, and it allows exactly that address and port.",
    ).tag(config=True)
    egress_byte_budget = Int(
        0, help="Bytes (both directions) the session may move through the proxy; a transfer "
        "that crosses it is cut and later requests are refused. 0: no budget.",
    ).tag(config=True)
    egress_proxy_port = Int(
        3128, help="Loopback port of the proxy inside the sandbox (HTTP_PROXY points there)."
    ).tag(config=True)
    egress_idle_timeout = Float(
        120.0, help="Seconds a proxied connection may carry no byte before it is closed."
    ).tag(config=True)
    ca_bundle = Unicode(
        "", help="A PEM file of CA certificates the kernel trusts for HTTPS instead of the "
        "system's (bound read-only; SSL_CERT_FILE and REQUESTS_CA_BUNDLE point at it). "
        "Empty: the system store, bound read-only when egress is on.",
    ).tag(config=True)

    @validate("allowed_domains", "denied_domains")
    def _check_domains(self, proposal: Any) -> list[str]:
        name = proposal.trait.name
        try:
            return [check_pattern(p, name) for p in proposal.value]
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("egress_resolve")
    def _check_resolve(self, proposal: Any) -> dict[str, str]:
        try:
            EgressPolicy.from_settings([], [], [], "all", proposal.value)
        except ValueError as exc:
            raise TraitError(str(exc)) from None
        return dict(proposal.value)

    @property
    def egress_enabled(self) -> bool:
        """Whether kernels get the proxy (an allow-list is set and the sandbox is on)."""
        return bool(self.allowed_domains) and getattr(self, "mode", "bwrap") == "bwrap"

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.from_settings(
            self.allowed_domains, self.denied_domains, self.allowed_ports,
            self.egress_methods, self.egress_resolve,
        )

    def start_egress_proxy(
        self, session_dir: Path, logger: logging.Logger | None = None
    ) -> EgressProxy | None:
        """Start the host proxy of a session whose folder is ``session_dir`` (None without
        egress); the caller stops it when the session ends. Each request is logged at
        INFO on ``logger`` and kept for :meth:`EgressProxy.drain`."""
        if not self.egress_enabled:
            return None
        path = egress_socket_path(session_dir)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        proxy = EgressProxy(self.egress_policy(), path, byte_budget=self.egress_byte_budget,
                            idle_timeout=self.egress_idle_timeout, logger=logger)
        try:
            return proxy.start()
        except (OSError, ValueError) as exc:
            raise SandboxUnavailable(f"the egress proxy cannot start: {exc}") from exc

    def egress_description(self) -> list[str]:
        """The policy in force, in words (doctor, isolation lines of the trace)."""
        if not self.allowed_domains:
            return ["egress: none (SandboxConfig.allowed_domains is empty)"]
        lines = [
            f"egress: HTTP(S) through the host proxy to {', '.join(self.allowed_domains)}",
            f"egress ports {', '.join(str(p) for p in self.allowed_ports)}; methods "
            f"{'GET/HEAD, no HTTPS' if self.egress_methods == 'read-only' else 'all'}; "
            "IP addresses and non-public addresses refused; no DNS inside",
        ]
        if self.denied_domains:
            lines.append(f"egress denied (wins): {', '.join(self.denied_domains)}")
        if self.egress_resolve:
            pins = ", ".join(f"{k} -> {v}" for k, v in sorted(self.egress_resolve.items()))
            lines.append(f"egress pinned: {pins}")
        if self.egress_byte_budget:
            lines.append(f"egress budget: {self.egress_byte_budget} bytes per session")
        return lines

    # ---- what egress adds to a launch plan ----------------------------------------------

    def egress_env(self) -> dict[str, str]:
        """Proxy variables for the kernel: every common HTTP client reads one of these."""
        if not self.egress_enabled:
            return {}
        proxy = f"http://127.0.0.1:{self.egress_proxy_port}"
        env = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        env.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY)
        if self.ca_bundle:
            for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                env[name] = str(Path(self.ca_bundle).resolve())
        return env

    def egress_ro_paths(self) -> list[str]:
        """Read-only binds egress needs: the CA store, or the configured bundle."""
        if not self.egress_enabled:
            return []
        if self.ca_bundle:
            bundle = Path(self.ca_bundle).resolve()
            if not bundle.is_file():
                raise SandboxUnavailable(f"SandboxConfig.ca_bundle {self.ca_bundle} is not a "
                                         "file; point it at a PEM file of CA certificates")
            return [str(bundle)]
        return [p for p in CA_STORES if os.path.isdir(p)]

    def egress_command(self, kernel_cmd: list[str], session_dir: Path) -> list[str]:
        """``kernel_cmd`` behind the loopback bridge to the proxy socket (see
        codeact_kernel/kernel_side/egress_bridge.py), or unchanged without egress."""
        if not self.egress_enabled:
            return kernel_cmd
        source = BRIDGE_SOURCE.read_text(encoding="utf-8")
        return [sys.executable, "-I", "-S", "-c", source, str(self.egress_proxy_port),
                str(egress_socket_path(session_dir)), "--", *kernel_cmd]
