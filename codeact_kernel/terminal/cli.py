"""The ``codeact`` command: traitlets Applications, in the manner of Jupyter's own commands.

Every option is a trait (``--model`` is an alias of ``LLM.model``, and its help is the
trait's), and any trait can be set as ``--Class.trait=value``. A command's settings come
from, the later winning: ``jupyter_config`` and ``codeact_config`` (``.py`` or ``.json``)
in each folder of the Jupyter config path (``jupyter --paths``; the sandbox's kernelspec
launcher reads the same path), the file named by ``--config``, then the command line.

Subcommands: run, show, replay, export, bench, doctor, kernelspec (install). Each is imported
when it is chosen, so ``codeact --help`` loads none of the agent stack.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_core.application import JupyterApp, base_aliases, base_flags
from traitlets import Bool, List, TraitError, Unicode
from traitlets.config import Application, Configurable
from traitlets.config.loader import ArgumentError, ConfigFileNotFound
from traitlets.utils.importstring import import_item

from ..errors import CodeActError
from ..version import __version__

CANCEL_WAIT = 10.0  # seconds a Ctrl-C'd run gets to record itself as interrupted

CONFIG_FILE = "codeact_config"
TOOL_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
APPROVE_WORDS = {"all": "allow", "none": "deny"}  # --approve's words for Agent.approval
COMMON_ALIASES = {"config": base_aliases["config"], "log-level": base_aliases["log-level"]}
COMMON_FLAGS = {name: base_flags[name] for name in ("debug", "generate-config", "y")}


def _subcommand(path: str) -> Callable[[Application], Application]:
    """A subcommand built only when chosen (its module may import the whole agent)."""
    def build(parent: Application) -> Application:
        app: Application = import_item(path)(parent=parent)
        return app

    return build


def _legacy_forms(argv: list[str]) -> list[str]:
    """The forms the command has always taken, as the options the Application parses.

    ``--tools a:f b:g`` and ``--authorized-imports a,b`` become one option per value
    (repeated options accumulate: the traits are Lists, appended); only
    ``module:function`` words count as more tools, so a task after them stays the task.
    ``--approve all|none`` says ``allow|deny``, as ``Agent.approval`` does.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=")
        if arg == "--":
            return out + argv[i - 1:]
        if name in ("--authorized-imports", "--approve") and not eq and i < len(argv):
            value, i = argv[i], i + 1
        if name == "--authorized-imports":
            out += [f"{name}={part.strip()}" for part in value.split(",") if part.strip()]
        elif name == "--approve":
            out.append(f"{name}={APPROVE_WORDS.get(value, value)}")
        elif arg == "--tools" and i < len(argv):
            out += [arg, argv[i]]
            i += 1
            while i < len(argv) and TOOL_PATH.fullmatch(argv[i]):
                out += [arg, argv[i]]
                i += 1
        else:
            out.append(arg)
    return out


class CodeActCommand(JupyterApp):
    """What every codeact command shares: Jupyter's config path and ``--config``."""

    version = __version__
    aliases = COMMON_ALIASES
    flags = COMMON_FLAGS
    config_file_name = Unicode(
        CONFIG_FILE, help="Base name of the config files (.py or .json) read from each folder "
        "of the Jupyter config path."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Imported when the command is built, so that `codeact --help` imports none of them.
        self.classes = [*self.classes, *self.config_classes()]

    def config_classes(self) -> list[type[Configurable]]:
        """The classes whose settings this command documents and configures."""
        return []

    def _classes_with_config_traits(self, classes: Any = None) -> Any:
        # A listed class's settings may live on its bases (Agent's on AgentSettings and
        # its groups): they are documented and configured as the listed class's, so
        # `--help-all` and generated config files show each once, as Agent.<name>.
        listed = set(self.classes if classes is None else classes)
        for cls in super()._classes_with_config_traits(classes):
            if cls in listed or issubclass(cls, Application):
                yield cls

    def _find_subcommand(self, name: str) -> str:
        return ""  # no `codeact-<name>` executables found on PATH: subcommands are ours

    def migrate_config(self) -> None:
        """Nothing to migrate: codeact never had IPython 3's config files."""

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """The Jupyter config path first (its first folder wins), then ``--config``."""
        for name in ("jupyter_config", self.config_file_name):
            try:
                Application.load_config_file(self, name, path=self.config_file_paths)
            except ConfigFileNotFound:
                pass
        if self.config_file:
            path = Path(self.config_file).expanduser()
            if not path.is_file():
                raise CodeActError(f"config file {path} does not exist")
            self.raise_config_file_errors = True  # a file the user named must load
            Application.load_config_file(self, path.name, path=[str(path.resolve().parent)])

    def dispatch(self) -> int:
        """``--generate-config`` (write a commented file of every setting), else ``run``."""
        if self.generate_config:
            self.write_default_config()
            return 0
        return self.run()

    def run(self) -> int:
        """Do the command's work; the exit status. A command made of subcommands runs
        the one named, and names them all for a word it does not know."""
        if isinstance(self.subapp, CodeActCommand):
            return self.subapp.dispatch()
        if self.extra_args and self.subcommands:
            raise CodeActError(f"unknown command {self.extra_args[0]!r}; the commands are "
                               f"{', '.join(self.subcommands)} (see `{self.name} --help`)")
        self.print_help()
        return 2

    def start(self) -> None:
        raise RuntimeError("use codeact_kernel.terminal.cli.main()")


class CodeActApp(CodeActCommand):
    name = "codeact"
    description = "A CodeAct agent whose code runs in a sandboxed kernel."
    examples = """
codeact run "What is 2**100?" --model openai/gpt-4o-mini --api-key-env OPENAI_API_KEY
codeact run --demo --trace traces/demo.ipynb
codeact show traces/demo.ipynb
codeact run --help          # every option of a subcommand (--help-all: every setting)
"""
    flags: dict[Any, Any] = {"debug": base_flags["debug"]}  # noqa: RUF012
    subcommands: dict[str, Any] = {  # noqa: RUF012
        name: (_subcommand(f"codeact_kernel.terminal.{module}"), help_text)
        for name, module, help_text in (
            ("run", "cli.RunApp", "Run an agent on a task."),
            ("show", "commands.ShowApp", "Summarize a trace in the terminal."),
            ("replay", "commands.ReplayApp", "Re-run a trace in a fresh sandbox and compare."),
            ("export", "commands.ExportApp", "Export a trace for reviewers (HTML, OTLP)."),
            ("bench", "commands.BenchApp",
             "Compare the action formats (code, json, auto) on a task file."),
            ("doctor", "commands.DoctorApp", "Probe this machine's sandboxing support."),
            ("kernelspec", "commands.KernelSpecApp",
             "Manage the codeact-sandbox and codeact-review Jupyter kernelspecs."),
        )
    }


class RunApp(CodeActCommand):
    name = "codeact run"
    description = "Run an agent on a task: codeact run \"TASK\" [options]."
    tools = List(
        Unicode(),
        help="Host-side tools, as importable 'module:function' paths. Repeat the option, or "
        "list several after one --tools.",
    ).tag(config=True)
    demo = Bool(False, help="Run the built-in demo task (cities and populations, host tools)."
                ).tag(config=True)
    no_input = Bool(False, help="Fail input() calls in the agent's code instead of asking you."
                    ).tag(config=True)
    quiet = Bool(False, help="Print only the final answer.").tag(config=True)

    aliases: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_ALIASES,
        "model": "LLM.model", "api-base": "LLM.api_base", "api-key-env": "LLM.api_key_env",
        "max-steps": "Agent.max_steps", "step-timeout": "Agent.step_timeout",
        "action-format": "Agent.action_format",
        "max-output-chars": "Agent.max_output_chars", "trace": "Agent.trace_path",
        "otlp": "Agent.otel_endpoint", "managed-agent": "Agent.managed_agents_config",
        "authorized-imports": "Policy.authorized_imports",
        "tool-listing": "Agent.tool_listing", "mcp": "Agent.mcp_servers",
        "approve": "Agent.approval", "allow-domain": "SandboxConfig.allowed_domains",
        "workdir": "KernelSession.work_dir", "memory-limit": "SandboxConfig.memory_limit",
        "connection-file": "ConnectionFileKernelManager.connection_file",
        "gateway-url": "GatewayKernelManager.url",
        "gateway-token-env": "GatewayKernelManager.token_env",
        "kernel-name": "GatewayKernelManager.kernel_name", "tools": "RunApp.tools",
    }
    flags: dict[Any, Any] = {  # noqa: RUF012
        **COMMON_FLAGS,
        "demo": ({"RunApp": {"demo": True}}, demo.help),
        "no-input": ({"RunApp": {"no_input": True}}, no_input.help),
        "quiet": ({"RunApp": {"quiet": True}}, quiet.help),
        "confirm-code": ({"Agent": {"confirm_code": True}},
                         "Show each step's code to you before it runs: run, edit or deny it."),
        "unsafe-no-sandbox": ({"SandboxConfig": {"mode": "none"}},
                              "Run model-written code WITHOUT the OS sandbox. Loudly warned."),
    }

    def config_classes(self) -> list[type[Configurable]]:
        from ..agent.loop import Agent
        from ..kernels.connection import ConnectionFileKernelManager
        from ..kernels.gateway import GatewayKernelManager
        from ..kernels.local import SandboxKernelManager
        from ..kernels.session import KernelSession
        from ..models.llm import LLM
        from ..models.local import LocalModelServer
        from ..policy.rules import Policy
        from ..sandbox.config import SandboxConfig
        from ..telemetry.config import Telemetry

        return [Agent, LLM, LocalModelServer, Policy, KernelSession, SandboxKernelManager,
                SandboxConfig, ConnectionFileKernelManager, GatewayKernelManager, Telemetry]

    def parse_command_line(self, argv: Any = None) -> None:
        super().parse_command_line(_legacy_forms(list(sys.argv[1:] if argv is None else argv)))

    def run(self) -> int:
        from ..agent.loop import Agent
        from ..tools.tool import Tool
        from .demo import DEMO_TASK, demo_tools
        from .display import TerminalDisplay

        tools = [Tool.from_path(path) for path in self.tools]
        task = " ".join(self.extra_args).strip()
        if self.demo:
            tools = demo_tools() + tools
            task = task or DEMO_TASK
        if not task:
            raise CodeActError("no task given: `codeact run \"TASK\"` (or --demo)")
        agent = Agent(tools=tools, parent=self)
        display = TerminalDisplay(quiet=self.quiet)
        stdin = None if self.no_input or not sys.stdin.isatty() else _ask_human
        try:
            result = _run_interruptibly(agent, task, on_event=display.on_event,
                                        stdin_handler=stdin)
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


def main(argv: list[str] | None = None) -> int:
    """``codeact``; returns the exit status (2 for bad input, with a message naming it)."""
    app = CodeActApp()
    try:
        app.initialize(sys.argv[1:] if argv is None else argv)
        return app.dispatch()
    except SystemExit as exc:  # --help, --version, or argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except (CodeActError, TraitError, ArgumentError) as exc:
        from ..render.escape import escape_terminal

        print(f"codeact: error: {escape_terminal(str(exc))}", file=sys.stderr)
        return 2


def _run_interruptibly(agent: Any, task: str, **kwargs: Any) -> Any:
    """``agent.run`` on the thread's loop, where Ctrl-C ends the run as interrupted.

    Python raises KeyboardInterrupt in whichever task the signal lands in, often one
    reading the kernel's channels rather than the run itself; the run would then meet
    the session shut down by the cleanup and record an error. So the run is
    cancelled, and finishes (trace status ``interrupted``), before KeyboardInterrupt
    goes on to the caller.
    """
    import asyncio
    import contextlib

    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()  # the loop agent.start/close (run_sync) use
    run = loop.create_task(agent.arun(task, **kwargs))
    try:
        return loop.run_until_complete(run)
    except KeyboardInterrupt:
        run.cancel()
        with contextlib.suppress(BaseException):
            # Bounded: the cleanup that follows shuts the kernel down in any case.
            loop.run_until_complete(asyncio.wait([run], timeout=CANCEL_WAIT))
        raise


def _close_quietly(agent: Any) -> None:
    try:
        agent.close()
    except Exception as exc:  # shutting down after Ctrl-C must not raise a second trace
        print(f"codeact: cleanup after interrupt: {exc}", file=sys.stderr)


def _ask_human(prompt: str, password: bool) -> str:
    import getpass

    return getpass.getpass(prompt) if password else input(prompt)


if __name__ == "__main__":
    # Through the package's module, not this __main__ copy: the subcommands import it.
    from codeact_kernel.terminal.cli import main as package_main

    raise SystemExit(package_main())
