"""The ``codeact`` command line.

Every option maps onto a traitlets trait (``--model`` is ``LLM.model``), so a
config file (``--config FILE``), ``--Class.trait=value`` and the named flags
all come from one definition; the trait's own help text is the flag's help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from traitlets import TraitError
from traitlets.config import Config, Configurable
from traitlets.config.loader import KVArgParseConfigLoader, PyFileConfigLoader

from ..errors import CodeActError
from ..trace.escape import escape_terminal

# --approve's words -> Agent.approval.
APPROVE_FLAG = {"ask": "ask", "all": "allow", "none": "deny"}

# flag -> (Class, trait). The help text is taken from the trait itself.
RUN_OPTIONS: dict[str, tuple[str, str]] = {
    "model": ("LLM", "model"),
    "api-base": ("LLM", "api_base"),
    "api-key-env": ("LLM", "api_key_env"),
    "max-steps": ("Agent", "max_steps"),
    "step-timeout": ("Agent", "step_timeout"),
    "max-output-chars": ("Agent", "max_output_chars"),
    "trace": ("Agent", "trace_path"),
    "tool-listing": ("Agent", "tool_listing"),
    "otlp": ("Agent", "otel_endpoint"),
    "workdir": ("KernelSession", "work_dir"),
    "memory-limit": ("SandboxConfig", "memory_limit"),
    "connection-file": ("ConnectionFileSession", "connection_file"),
    "gateway-url": ("GatewaySession", "url"),
    "gateway-token-env": ("GatewaySession", "token_env"),
    "kernel-name": ("GatewaySession", "kernel_name"),
}


def _trait_classes() -> dict[str, type[Configurable]]:
    from ..agent.loop import Agent
    from ..kernels.connection import ConnectionFileKernelManager
    from ..kernels.gateway import GatewayKernelManager
    from ..kernels.session import KernelSession
    from ..models.llm import LLM
    from ..sandbox.config import SandboxConfig

    return {
        "Agent": Agent, "LLM": LLM, "KernelSession": KernelSession, "SandboxConfig": SandboxConfig,
        # Their config sections keep the names of the sessions they replaced.
        "ConnectionFileSession": ConnectionFileKernelManager,
        "GatewaySession": GatewayKernelManager,
    }


def _trait_help(cls_name: str, trait: str) -> str:
    help_text = _trait_classes()[cls_name].class_traits()[trait].help or ""
    return f"{help_text} (config: {cls_name}.{trait})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeact", description="A CodeAct agent whose code runs in a sandboxed kernel."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run an agent on a task.")
    run.add_argument("task", nargs="?", help="The task, in plain words.")
    for flag, (cls_name, trait) in RUN_OPTIONS.items():
        run.add_argument(f"--{flag}", dest=flag.replace("-", "_"), default=None,
                         help=_trait_help(cls_name, trait))
    run.add_argument("--tools", nargs="+", default=[], metavar="PKG.MODULE:NAME",
                     help="Host-side tools, as importable 'module:function' paths.")
    run.add_argument("--allow-domain", action="append", default=None, metavar="NAME",
                     help=_trait_help("SandboxConfig", "allowed_domains") + " Repeatable.")
    run.add_argument("--authorized-imports", default=None, metavar="A,B",
                     help="Extra modules the code may import, comma-separated; '*' allows all. "
                     "(config: Policy.authorized_imports)")
    run.add_argument("--managed-agent", action="append", default=[], metavar="JSON",
                     help="A sub-agent callable from the code, as JSON: {\"name\": ..., "
                     "\"description\": ..., \"model\": ..., \"tools\": [\"pkg.mod:fn\"]}. "
                     "Repeatable. (config: Agent.managed_agents_config)")
    run.add_argument("--mcp", action="append", default=[], metavar="JSON",
                     help="An MCP server whose tools the code can call, as JSON: {\"name\": "
                     "\"files\", \"command\": [\"python\", \"server.py\"]} or {\"name\": "
                     "\"gh\", \"url\": \"http://...\"}. Repeatable. (config: Agent.mcp_servers)")
    run.add_argument("--approve", choices=sorted(APPROVE_FLAG), default=None,
                     help="Calls of tools that need approval: ask a human (without one, "
                     "Agent.approval_headless decides), allow all, or deny all. "
                     "(config: Agent.approval = ask|allow|deny)")
    run.add_argument("--confirm-code", action="store_true",
                     help=_trait_help("Agent", "confirm_code"))
    run.add_argument("--config", default=None, help="A traitlets config file (.py or .json).")
    run.add_argument("--demo", action="store_true",
                     help="Run the built-in demo task (cities and populations, host tools).")
    run.add_argument("--no-input", action="store_true",
                     help="Fail input() calls in the agent's code instead of asking you.")
    run.add_argument("--unsafe-no-sandbox", action="store_true",
                     help="Run model-written code WITHOUT the OS sandbox. Loudly warned.")
    run.add_argument("--quiet", action="store_true", help="Print only the final answer.")
    doctor = sub.add_parser("doctor", help="Probe this machine's sandboxing support.")
    doctor.add_argument("--config", default=None, help="A traitlets config file.")
    replay = sub.add_parser("replay", help="Re-run a trace in a fresh sandbox and compare.")
    replay.add_argument("trace", help="The trace notebook (.ipynb).")
    replay.add_argument("--live-tools", action="store_true",
                        help="Call the real tools instead of the recorded results.")
    replay.add_argument("--tools", nargs="+", default=[], metavar="PKG.MODULE:NAME",
                        help="The real tools, with --live-tools.")
    replay.add_argument("--timeout", type=float, default=None,
                        help="Seconds per cell (default: the trace's step timeout).")
    replay.add_argument("--report", default=None, help="Write the per-cell verdicts as JSON.")
    show = sub.add_parser("show", help="Summarize a trace in the terminal.")
    show.add_argument("trace", help="The trace notebook (.ipynb).")
    export = sub.add_parser("export", help="Export a trace for reviewers.")
    export.add_argument("trace", help="The trace notebook (.ipynb).")
    export.add_argument("--html", action="store_true", help="Export as HTML.")
    export.add_argument("-o", "--output", default=None, help="Output file (default: .html).")
    export.add_argument("--otlp", default=None, metavar="URL",
                        help="Send the run (sub-agents included) as OpenTelemetry spans to "
                        "this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318.")
    export.add_argument("--otlp-file", default=None, metavar="OUT.json",
                        help="Write the run's spans as an OTLP/JSON request to a file.")
    ks = sub.add_parser("kernelspec", help="Manage the codeact-sandbox and codeact-review "
                        "Jupyter kernelspecs.")
    ks_sub = ks.add_subparsers(dest="ks_command", required=True)
    install = ks_sub.add_parser("install", help="Install both kernelspecs for Jupyter frontends: "
                                "codeact-sandbox, and codeact-review for re-running traces.")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="Install for the current user.")
    where.add_argument("--sys-prefix", action="store_true", help="Install into sys.prefix.")
    where.add_argument("--prefix", default=None, help="Install under this prefix.")
    return parser


def load_config(args: argparse.Namespace, extra: list[str]) -> Config:
    """Config file first, then --Class.trait=value pairs, then the named flags."""
    config = Config()
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.exists():
            raise CodeActError(f"config file {path} does not exist")
        if path.suffix == ".json":
            from traitlets.config.loader import JSONFileConfigLoader

            config.merge(JSONFileConfigLoader(path.name, str(path.parent)).load_config())
        else:
            config.merge(PyFileConfigLoader(path.name, str(path.parent)).load_config())
    if extra:
        bad = [e for e in extra if not e.startswith("--") or "." not in e.split("=")[0]]
        if bad:
            raise CodeActError(
                f"unrecognized arguments: {' '.join(bad)}. Options are listed by "
                "`codeact run --help`; any trait can be set as --Class.trait=value"
            )
        config.merge(KVArgParseConfigLoader(extra).load_config())
    for flag, (cls_name, trait) in RUN_OPTIONS.items():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            config[cls_name][trait] = _convert(flag, cls_name, trait, value)
    if getattr(args, "allow_domain", None):
        config.SandboxConfig.allowed_domains = list(args.allow_domain)
    if getattr(args, "authorized_imports", None):
        config.Policy.authorized_imports = [
            name.strip() for name in args.authorized_imports.split(",") if name.strip()
        ]
    if getattr(args, "managed_agent", None):
        config.Agent.managed_agents_config = [_json_arg(a) for a in args.managed_agent]
    if getattr(args, "mcp", None):
        config.Agent.mcp_servers = [_json_arg(a, "--mcp") for a in args.mcp]
    if getattr(args, "approve", None):
        config.Agent.approval = APPROVE_FLAG[args.approve]
    if getattr(args, "confirm_code", False):
        config.Agent.confirm_code = True
    if getattr(args, "unsafe_no_sandbox", False):
        config.SandboxConfig.mode = "none"
    return config


def _convert(flag: str, cls_name: str, trait: str, value: str) -> Any:
    """Turn a flag's text into the trait's type, the way traitlets' own CLI does."""
    try:
        return _trait_classes()[cls_name].class_traits()[trait].from_string(value)
    except (TraitError, ValueError) as exc:
        raise CodeActError(f"--{flag}: {value!r} is not valid: {exc}") from None


def _json_arg(text: str, flag: str = "--managed-agent") -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodeActError(f"{flag} takes a JSON object: {exc}: {text!r}") from exc
    if not isinstance(value, dict):
        raise CodeActError(f"{flag} takes a JSON object, got {text!r}")
    return value


class _Holder(Configurable):
    """Carries the CLI's config to the objects it creates (as their parent)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "run":
            return _run(args, extra)
        if args.command == "doctor":
            return _doctor(args, extra)
        if args.command == "replay":
            return _replay(args, extra)
        if args.command == "show":
            from ..trace.report import show

            print(show(args.trace))
            return 0
        if args.command == "export":
            return _export(args)
        if args.command == "kernelspec":
            from ..sandbox.kernelspec import install_kernelspec

            for review in (False, True):
                path = install_kernelspec(user=args.user, sys_prefix=args.sys_prefix,
                                          prefix=args.prefix, review=review)
                print(f"Installed kernelspec {Path(path).name} in {path}")
            return 0
    except (CodeActError, TraitError) as exc:
        print(f"codeact: error: {escape_terminal(str(exc))}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


def _export(args: argparse.Namespace) -> int:
    if not (args.html or args.otlp or args.otlp_file):
        print("codeact export: say what to export: --html, --otlp URL or --otlp-file OUT.json",
              file=sys.stderr)
        return 2
    if args.html:
        from ..trace.report import export_html

        print(f"Wrote {export_html(args.trace, args.output)}")
    if args.otlp or args.otlp_file:
        from ..telemetry.export import export_spans

        print(export_spans(args.trace, endpoint=args.otlp, file=args.otlp_file))
    return 0


def _replay(args: argparse.Namespace, extra: list[str]) -> int:
    import json

    from ..tools.tool import Tool
    from ..trace.replay import Replayer

    holder = _Holder(config=load_config(args, extra))
    replayer = Replayer(parent=holder, live_tools=args.live_tools)
    if args.timeout is not None:
        replayer.timeout = args.timeout
    tools = [Tool.from_path(path) for path in args.tools]
    report = replayer.replay(args.trace, tools)
    for cell in report.cells:
        print(f"cell {cell.cell:>3}  step {cell.step}: {cell.verdict}")
        if cell.diff:
            # Recorded and replayed outputs both came from a kernel.
            print(escape_terminal("    " + cell.diff.replace("\n", "\n    ")))
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items()))
    print(("all same" if report.all_same else "DIFFERENCES FOUND") + f" ({counts})")
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.all_same else 1


def _doctor(args: argparse.Namespace, extra: list[str]) -> int:
    from ..sandbox.config import SandboxConfig
    from ..sandbox.doctor import doctor_report

    holder = _Holder(config=load_config(args, extra))
    report, usable = doctor_report(SandboxConfig(parent=holder))
    print(report)
    return 0 if usable else 1


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..agent.loop import Agent
    from ..tools.tool import Tool
    from .demo import DEMO_TASK, demo_tools
    from .display import TerminalDisplay

    tools = [Tool.from_path(path) for path in args.tools]
    task = args.task
    if args.demo:
        tools = demo_tools() + tools
        task = task or DEMO_TASK
    if not task:
        raise CodeActError("no task given: `codeact run \"TASK\"` (or --demo)")
    holder = _Holder(config=load_config(args, extra))
    agent = Agent(tools=tools, parent=holder)
    display = TerminalDisplay(quiet=args.quiet)
    stdin = None if args.no_input or not sys.stdin.isatty() else _ask_human
    try:
        result = agent.run(task, on_event=display.on_event, stdin_handler=stdin)
    except KeyboardInterrupt:
        display.stop()
        print("\ncodeact: interrupted; the trace was saved and the kernel shut down.",
              file=sys.stderr)
        _close_quietly(agent)
        return 130
    finally:
        display.stop()
    display.summary(result)
    return 0 if result.ok else 1


def _close_quietly(agent: Any) -> None:
    try:
        agent.close()
    except Exception as exc:  # shutting down after Ctrl-C must not raise a second trace
        print(f"codeact: cleanup after interrupt: {exc}", file=sys.stderr)


def _ask_human(prompt: str, password: bool) -> str:
    import getpass

    return getpass.getpass(prompt) if password else input(prompt)


if __name__ == "__main__":
    raise SystemExit(main())
