"""`codeact doctor` on this machine: real probes, real bubblewrap."""

from __future__ import annotations

import os

import pytest

from codeact_kernel.sandbox.config import GIB, SandboxConfig
from codeact_kernel.sandbox.doctor import doctor_report, main

pytestmark = pytest.mark.timeout(120)


def test_report_on_this_machine() -> None:
    report, usable = doctor_report()
    assert usable, report
    assert "bubblewrap" in report and "[  ok] bubblewrap starts" in report
    # What the kernel itself saw, from inside the sandbox.
    assert "CapEff 0000000000000000" in report
    assert "network none" in report and "root fs read-only" in report
    if os.geteuid() == 0:
        assert "uid 65534" in report
    assert "memory: 2.0 GiB" in report
    assert "processes and threads: 256" in report
    assert "RLIMIT_CPU" in report
    assert "seccomp: 46 syscalls denied" in report and "seccomp mode 2" in report
    assert "Verdict: sandbox usable." in report


def test_bogus_bwrap_path_is_unusable_and_names_the_fix() -> None:
    report, usable = doctor_report(SandboxConfig(bwrap_path="/nonexistent/bwrap"))
    assert not usable
    assert "[FAIL] bubblewrap: bwrap not found at /nonexistent/bwrap" in report
    assert "apt-get install bubblewrap" in report
    assert "NOT usable" in report


def test_bwrap_that_cannot_start_is_unusable() -> None:
    report, usable = doctor_report(SandboxConfig(bwrap_path="/bin/false"))
    assert not usable
    assert "[FAIL] bubblewrap starts" in report
    assert "apt-get install bubblewrap" in report


def test_limits_follow_the_configuration() -> None:
    report, _ = doctor_report(
        SandboxConfig(use_cgroups=False, memory_limit=GIB, pids_limit=0, cpu_seconds=0)
    )
    assert "memory: 1.0 GiB by RLIMIT_AS" in report
    assert "processes and threads: unlimited" in report
    assert "CPU time" not in report
    assert "disabled by SandboxConfig.use_cgroups" in report


def test_unsandboxed_mode_is_called_out() -> None:
    report, usable = doctor_report(SandboxConfig(mode="none"))
    assert usable  # bubblewrap itself works; the configuration chose not to use it
    assert "WITHOUT this sandbox" in report


def test_main_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "Verdict: sandbox usable." in capsys.readouterr().out


def test_egress_policy_is_reported_and_probed_from_inside() -> None:
    report, usable = doctor_report()
    assert "Network egress:\n  - egress: none (SandboxConfig.allowed_domains is empty)" in report
    config = SandboxConfig(allowed_domains=["data.example.org", "*.cdn.example.net"],
                           denied_domains=["bad.cdn.example.net"], egress_methods="read-only",
                           egress_resolve={"data.example.org:80": "127.0.0.1:8080"})
    report, usable = doctor_report(config)
    assert usable, report
    assert "egress: HTTP(S) through the host proxy to data.example.org, *.cdn.example.net" in (
        report)
    assert "methods GET/HEAD, no HTTPS" in report
    assert "egress denied (wins): bad.cdn.example.net" in report
    assert "egress pinned: data.example.org:80 -> 127.0.0.1:8080" in report
    # The probe inside reached the proxy through the bridge, and the proxy said no.
    assert "egress proxy refuses a name off the list: HTTP/1.1 403 Forbidden by codeact " \
           "egress policy: codeact-doctor.invalid is not in SandboxConfig.allowed_domains" in report
    assert "network none" in report  # raw sockets still have no route
