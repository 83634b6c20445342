"""The ``codeact`` subcommands that read traces or probe the machine: show, replay,
export, doctor and kernelspec (``run`` is in ``cli.py``). Each is a traitlets Application
whose options are aliases of traits, like ``cli.RunApp``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, List, Unicode
from traitlets.config import Configurable

from ..errors import CodeActError
from .cli import COMMON_ALIASES, COMMON_FLAGS, CodeActCommand, _legacy_forms, _subcommand


class _TraceCommand(CodeActCommand):
    """A command on one trace notebook, given as its argument."""

    @property
    def trace(self) -> str:
        if len(self.extra_args) != 1:
            raise CodeActError(f"`{self.name} TRACE`: give one trace notebook (.ipynb), got "
                               f"{len(self.extra_args)} arguments")
        return str(self.extra_args[0])


class ShowApp(_TraceCommand):
    name = "codeact show"
    description = "Summarize a trace: task, steps, tool calls, tokens, cost, verdicts."

    def run(self) -> int:
        from ..trace.report import show

        print(show(self.trace))
        return 0


class ReplayApp(_TraceCommand):
    name = "codeact replay"
    description = ("Re-run a trace in a fresh sandbox and compare each cell's outputs; exits "
                   "1 when a cell differs.")
    tools = List(Unicode(), help="The real tools ('module:function'), with --live-tools."
                 ).tag(config=True)
    report = Unicode("", help="Write the per-cell verdicts to this JSON file.").tag(config=True)
    aliases: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_ALIASES,
        "tools": "ReplayApp.tools", "report": "ReplayApp.report", "timeout": "Replayer.timeout",
    }
    flags: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_FLAGS,
        "live-tools": ({"Replayer": {"live_tools": True}},
                       "Call the real tools instead of the recorded results."),
    }

    def config_classes(self) -> list[type[Configurable]]:
        from ..agent.replay import Replayer
        from ..kernels.session import KernelSession
        from ..sandbox.config import SandboxConfig

        return [Replayer, KernelSession, SandboxConfig]

    def parse_command_line(self, argv: Any = None) -> None:
        super().parse_command_line(_legacy_forms(list(sys.argv[1:] if argv is None else argv)))

    def run(self) -> int:
        from ..agent.replay import Replayer
        from ..render.escape import escape_terminal
        from ..tools.tool import Tool

        tools = [Tool.from_path(path) for path in self.tools]
        report = Replayer(parent=self).replay(self.trace, tools)
        for cell in report.cells:
            print(f"cell {cell.cell:>3}  step {cell.step}: {cell.verdict}")
            if cell.diff:
                # Recorded and replayed outputs both came from a kernel.
                print(escape_terminal("    " + cell.diff.replace("\n", "\n    ")))
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items()))
        print(("all same" if report.all_same else "DIFFERENCES FOUND") + f" ({counts})")
        if self.report:
            Path(self.report).write_text(json.dumps(report.to_json(), indent=2))
        return 0 if report.all_same else 1


class BenchApp(CodeActCommand):
    name = "codeact bench"
    description = ("Compare the action formats (code, json, auto) on your own tasks: "
                   "codeact bench TASKS.py [--formats code,json,auto] [--model M] [--repeat N]. "
                   "The task-file format is in codeact_kernel/bench/tasks.py (and the README).")
    formats = Unicode("code,json,auto", help="Comma-separated action formats to compare."
                      ).tag(config=True)
    only = Unicode("", help="Comma-separated task names: run only these.").tag(config=True)
    aliases: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_ALIASES,
        "formats": "BenchApp.formats", "only": "BenchApp.only", "repeat": "Bench.repeat",
        ("o", "output"): "Bench.output_dir", "model": "LLM.model", "api-base": "LLM.api_base",
        "api-key-env": "LLM.api_key_env", "max-steps": "Agent.max_steps",
        "step-timeout": "Agent.step_timeout",
    }

    def config_classes(self) -> list[type[Configurable]]:
        from ..agent.loop import Agent
        from ..bench.runner import Bench
        from ..kernels.session import KernelSession
        from ..models.llm import LLM
        from ..models.local import LocalModelServer
        from ..policy.rules import Policy
        from ..sandbox.config import SandboxConfig

        return [Bench, Agent, LLM, LocalModelServer, Policy, KernelSession, SandboxConfig]

    def run(self) -> int:
        from ..bench.runner import Bench, table
        from ..bench.tasks import load_tasks
        from ..render.escape import escape_terminal

        if len(self.extra_args) != 1:
            raise CodeActError("`codeact bench TASKS.py`: give one task file")
        formats = [f.strip() for f in self.formats.split(",") if f.strip()]
        only = [n.strip() for n in self.only.split(",") if n.strip()]
        tasks = load_tasks(self.extra_args[0], only)
        bench = Bench(parent=self, formats=formats)
        print(f"{len(tasks)} tasks x {len(formats)} formats x {bench.repeat} rounds; "
              f"results in {bench.folder}", flush=True)

        def progress(row: Any) -> None:
            mark = "PASS" if row.category == "pass" else "FAIL"
            print(escape_terminal(f"{mark} {row.format:5s} {row.task:28s} {row.category:17s} "
                                  f"steps={row.steps} {row.seconds:.1f}s {row.note[:80]}"),
                  flush=True)

        report = bench.run(tasks, on_row=progress)
        print(f"\nmodel {escape_terminal(report.model)}; load "
              + ", ".join(f"{x:.1f}" for x in report.load) + "\n")
        print(table(report))
        print(f"\nresults: {bench.folder / 'results.json'}; traces: {bench.folder / 'traces'}")
        return 0


class ExportApp(_TraceCommand):
    name = "codeact export"
    description = "Export a trace for reviewers: HTML, or OpenTelemetry spans."
    html = Bool(False, help="Export as HTML, each step's metadata shown.").tag(config=True)
    output = Unicode("", help="The HTML file (default: the trace's name with .html).").tag(
        config=True)
    otlp = Unicode("", help="Send the run (sub-agents included) as OpenTelemetry spans to "
                   "this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318.").tag(config=True)
    otlp_file = Unicode("", help="Write the run's spans as an OTLP/JSON request to this file."
                        ).tag(config=True)
    aliases: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_ALIASES,
        ("o", "output"): "ExportApp.output", "otlp": "ExportApp.otlp",
        "otlp-file": "ExportApp.otlp_file",
    }
    flags: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_FLAGS,
        "html": ({"ExportApp": {"html": True}}, html.help),
    }

    def run(self) -> int:
        trace = self.trace
        if not (self.html or self.otlp or self.otlp_file):
            raise CodeActError("say what to export: --html, --otlp URL or --otlp-file OUT.json")
        if self.html:
            from ..trace.report import export_html

            print(f"Wrote {export_html(trace, self.output or None)}")
        if self.otlp or self.otlp_file:
            from ..telemetry.export import export_spans

            print(export_spans(trace, endpoint=self.otlp or None, file=self.otlp_file or None))
        return 0


class DoctorApp(CodeActCommand):
    name = "codeact doctor"
    description = "Probe this machine's sandboxing support; exits 1 when no sandbox is usable."

    def config_classes(self) -> list[type[Configurable]]:
        from ..sandbox.config import SandboxConfig

        return [SandboxConfig]

    def run(self) -> int:
        from ..sandbox.config import SandboxConfig
        from ..sandbox.doctor import doctor_report

        report, usable = doctor_report(SandboxConfig(parent=self))
        print(report)
        return 0 if usable else 1


class InstallKernelSpecApp(CodeActCommand):
    name = "codeact kernelspec install"
    description = ("Install both kernelspecs for Jupyter frontends: codeact-sandbox, and "
                   "codeact-review for re-running traces. Options after -- are baked into "
                   "their launcher, e.g. -- --SandboxConfig.memory_limit=4294967296")
    user = Bool(False, help="Install for the current user.").tag(config=True)
    sys_prefix = Bool(False, help="Install into this Python's prefix (a venv).").tag(config=True)
    prefix = Unicode("", help="Install under PREFIX/share/jupyter/kernels.").tag(config=True)
    aliases: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_ALIASES, "prefix": "InstallKernelSpecApp.prefix",
    }
    flags: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_FLAGS,
        "user": ({"InstallKernelSpecApp": {"user": True}}, user.help),
        "sys-prefix": ({"InstallKernelSpecApp": {"sys_prefix": True}}, sys_prefix.help),
    }

    def run(self) -> int:
        from ..sandbox.kernelspec import install_kernelspec

        if sum([self.user, self.sys_prefix, bool(self.prefix)]) > 1:
            raise CodeActError("choose one of --user, --sys-prefix and --prefix")
        for review in (False, True):
            path = install_kernelspec(user=self.user, sys_prefix=self.sys_prefix,
                                      prefix=self.prefix or None, review=review,
                                      launcher_args=list(self.extra_args))
            print(f"Installed kernelspec {Path(path).name} in {path}")
        return 0


class KernelSpecApp(CodeActCommand):
    name = "codeact kernelspec"
    description = "Manage the codeact-sandbox and codeact-review Jupyter kernelspecs."
    subcommands: dict[str, Any] = {  # noqa: RUF012
        "install": (_subcommand("codeact_kernel.terminal.commands.InstallKernelSpecApp"),
                    "Install the kernelspec for Jupyter frontends."),
    }
