"""``%load_ext codeact_kernel``: the ``%%agent`` and ``%agent`` magics.

The agent runs on a dedicated background thread with its own event loop (its
ZMQ sockets belong to that loop), while the notebook's main thread pumps its
events: displays update in place through display handles, and ``input()``
called by the agent's code is asked of the human from the main thread, the
only thread where ipykernel's stdin works.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import queue
import sys
import threading
import time
import warnings
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Float, Int, List, Unicode, observe
from traitlets.config import Config

from ..agent.handoff import push_variables
from ..agent.loop import Agent
from ..agent.results import AgentEvent, RunResult
from ..kernels.factory import configured_manager
from ..kernels.pool import KernelPool
from ..render.firewall import OutputFirewall
from ..tools.tool import tool

_DONE = object()


class _LoopThread:
    """A thread that owns one asyncio loop for the agent's whole life."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="codeact-agent")
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.submit(coro).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class _InputRequest:
    def __init__(self, prompt: str, password: bool) -> None:
        self.prompt, self.password = prompt, password


# AgentMagics settings that belong to the Agent or its LLM: still read, with a warning.
DEPRECATED_SETTINGS: dict[str, tuple[str, str]] = {
    "model": ("LLM", "model"),
    "api_base": ("LLM", "api_base"),
    "api_key_env": ("LLM", "api_key_env"),
    "max_steps": ("Agent", "max_steps"),
    "step_timeout": ("Agent", "step_timeout"),
    "trace_dir": ("Agent", "trace_dir"),
}
# Cell options that select the model: a different one starts a new session.
MODEL_OPTIONS: dict[str, str] = {"model": "model", "api_base": "api_base",
                                 "api_key_env": "api_key_env"}


@magics_class
class AgentMagics(Magics):
    """The %%agent magic. Agent, model and sandbox settings are the notebook's config
    (``%config Agent.max_steps = 20``, ``%config LLM.model = "..."``, config files); a
    cell's options layer over them for that cell, and nothing here copies them."""

    tools = List(Unicode(), help="Names of notebook functions always offered as tools.").tag(
        config=True
    )
    pool_size = Int(
        1,
        help="Sandbox kernels kept started for this notebook, so that the first %%agent and "
        "--new do not wait for a kernel to start (each idle kernel holds about 55 MB). "
        "0 starts each session's kernel on demand.",
    ).tag(config=True)

    model = Unicode(None, allow_none=True,
                    help="Deprecated: use %config LLM.model.").tag(config=True)
    api_base = Unicode(None, allow_none=True,
                       help="Deprecated: use %config LLM.api_base.").tag(config=True)
    api_key_env = Unicode(None, allow_none=True,
                          help="Deprecated: use %config LLM.api_key_env.").tag(config=True)
    max_steps = Int(None, allow_none=True,
                    help="Deprecated: use %config Agent.max_steps.").tag(config=True)
    step_timeout = Float(None, allow_none=True,
                         help="Deprecated: use %config Agent.step_timeout.").tag(config=True)
    trace_dir = Unicode(None, allow_none=True,
                        help="Deprecated: use %config Agent.trace_dir.").tag(config=True)

    @observe(*DEPRECATED_SETTINGS)
    def _warn_deprecated(self, change: Any) -> None:
        if change.new is None:
            return
        owner, trait = DEPRECATED_SETTINGS[change.name]
        warnings.warn(
            f"AgentMagics.{change.name} is deprecated: use %config {owner}.{trait} = "
            f"{change.new!r}, which %%agent, the codeact command and config files all read",
            DeprecationWarning, stacklevel=2,
        )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.current: Agent | None = None
        self._runner: _LoopThread | None = None
        self._signature: tuple[Any, ...] = ()
        self.pool: KernelPool | None = None
        self._pool_config: dict[str, Any] = {}
        atexit.register(self.shutdown)

    @property
    def _shell(self) -> Any:
        if self.shell is None:
            raise UsageError("codeact_kernel's magics need an IPython shell")
        return self.shell

    # ---- magics ---------------------------------------------------------------------

    @magic_arguments()
    @argument("--model", help="litellm model string, or 'local' (default: %%config LLM.model).")
    @argument("--api-base", help="API base URL (default: %%config LLM.api_base).")
    @argument("--api-key-env",
              help="Host variable holding the API key (default: %%config LLM.api_key_env).")
    @argument("--max-steps", type=int,
              help="Step budget of this cell (default: %%config Agent.max_steps).")
    @argument("--tools", help="Notebook functions offered as host tools: name1,name2.")
    @argument("--in", dest="inputs", help="Variables sent into the sandbox: df,x.")
    @argument("-o", "--out", help="Store the final answer in this variable.")
    @argument("--new", action="store_true", help="Start a fresh agent session.")
    @argument("--code", action="store_true",
              help="Insert the generated code as the next cell instead of running it.")
    @argument("--trust-outputs", action="store_true",
              help="Show this cell's sandbox outputs unfiltered, JavaScript included "
              "(interactive plots): their code runs with your Jupyter token. Warned each time.")
    @argument("task", nargs="*", help="The task (for %agent; %%agent takes the cell).")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> Any:
        """Run the CodeAct agent on a task: %agent TASK, or %%agent [options] + task cell."""
        try:
            args = parse_argstring(self.agent, line)
        except UsageError as exc:
            raise UsageError(f"{exc}\nUsage: %%agent [--model M] [--api-base URL] "
                             "[--api-key-env VAR] [--max-steps N] [--tools f,g] [--in df,x] "
                             "[-o NAME] [--new] [--code] [--trust-outputs]  (see %agent?)"
                             ) from None
        task = (cell if cell is not None else " ".join(args.task)).strip()
        if not task:
            raise UsageError("no task: write it in the cell body (%%agent) or after %agent")
        agent = self._session(args)
        if args.inputs:
            names = _split(args.inputs)
            missing = [n for n in names if n not in self._shell.user_ns]
            if missing:
                raise UsageError(f"--in: no variable named {', '.join(missing)} in the notebook")
            assert self._runner is not None
            self._runner.run(push_variables(agent.session, {n: self._shell.user_ns[n]
                                                            for n in names}))
        if args.code:
            return self._insert_code(agent, task)
        firewall = OutputFirewall(parent=self)
        if args.trust_outputs:
            firewall.trusted = True
        result = self._run_live(agent, task, firewall, args.max_steps)
        self._shell.user_ns["_agent"] = result.answer
        if args.out:
            self._shell.user_ns[args.out] = result.answer
        return None

    @line_magic
    def agent_reset(self, line: str = "") -> None:
        """Clear the sandbox's variables (%reset) and the agent's conversation."""
        if self.current is not None and self._runner is not None:
            self._runner.run(self.current.areset())
        print("codeact: sandbox variables and conversation cleared")

    @line_magic
    def agent_trace(self, line: str = "") -> str | None:
        """Say where the session's trace is, or copy it to PATH."""
        if self.current is None or self.current.trace is None:
            print("codeact: no agent session yet; run %%agent first")
            return None
        source = self.current.trace.path
        if line.strip():
            target = Path(line.strip()).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            print(f"codeact: trace saved to {target}")
            return str(target)
        print(f"codeact: trace notebook: {source}")
        return str(source)

    # ---- session management ------------------------------------------------------------

    def _session(self, args: Any) -> Agent:
        config = self._layered_config(args)
        tools = [self._tool(name) for name in [*self.tools, *_split(args.tools or "")]]
        chosen = {name: config.LLM.get(name) for name in MODEL_OPTIONS}
        signature = (sorted(chosen.items()), tuple(t.name for t in tools),
                     tuple(id(t.fn) for t in tools))
        if args.new or self.current is None or signature != self._signature:
            self.close()
            self._runner = _LoopThread()
            agent = Agent(tools=tools, parent=self, config=config, pool=self._warm_pool())
            self._runner.run(agent.astart())
            self.current, self._signature = agent, signature
        assert self.current is not None
        # Settings changed with %config since the session began apply from this cell on.
        for part in (self.current, self.current.llm, self.current.policy):
            part.update_config(config)
        return self.current

    def _layered_config(self, args: Any) -> Config:
        """The notebook's config, then deprecated AgentMagics settings, then the cell's
        model options; a copy, so that nothing is written back into the notebook's."""
        config: Config = copy.deepcopy(self.config)
        for name, (owner, trait) in DEPRECATED_SETTINGS.items():
            if getattr(self, name) is not None:
                config[owner][trait] = getattr(self, name)
        for option, trait in MODEL_OPTIONS.items():
            if getattr(args, option):
                config.LLM[trait] = getattr(args, option)
        return config

    def _tool(self, name: str) -> Any:
        fn = self._shell.user_ns.get(name)
        if not callable(fn):
            raise UsageError(f"--tools: {name!r} is not a function defined in this notebook")
        return tool(fn)

    def _warm_pool(self) -> KernelPool | None:
        # Kernels waiting in the pool were started with the config of their time.
        wanted = {k: dict(self.config[k]) for k in ("SandboxConfig", "KernelSession",
                                                     "SandboxKernelManager", "KernelPool")
                  if k in self.config}
        local = configured_manager(self).poolable  # else: no use for warm kernels
        if self.pool is not None and (wanted != self._pool_config or not local):
            self.pool.close()
            self.pool = None
        if self.pool is None and self.pool_size > 0 and local:
            self.pool = KernelPool(size=self.pool_size, parent=self).start()
            self._pool_config = wanted
        return self.pool

    def shutdown(self) -> None:
        """Shut the session and the notebook's warm kernels down (also at interpreter exit)."""
        try:
            self.close()
        finally:
            if self.pool is not None:
                self.pool.close()
                self.pool = None

    def close(self) -> None:
        """Shut the sandbox kernel down."""
        if self.current is not None and self._runner is not None:
            try:
                self._runner.run(self.current.aclose())
            finally:
                self._runner.stop()
        self.current, self._runner = None, None

    # ---- running with live display ----------------------------------------------------------

    def _run_live(self, agent: Agent, task: str, firewall: OutputFirewall,
                  max_steps: int | None) -> RunResult:
        from .display import LiveDisplay

        assert self._runner is not None
        if firewall.trusted:
            _warn_trusted()
        events: queue.Queue[Any] = queue.Queue()
        loop = self._runner.loop

        def ask(prompt: str, password: bool) -> asyncio.Future[str]:
            future: asyncio.Future[str] = loop.create_future()
            events.put((_InputRequest(prompt, password), future))
            return future

        async def job() -> RunResult:
            try:
                return await agent.arun(task, on_event=events.put, stdin_handler=ask,
                                        max_steps=max_steps)
            finally:
                events.put(_DONE)

        display = LiveDisplay(time.monotonic(), firewall)
        future = self._runner.submit(job())
        try:
            self._pump(events, display, loop)
        except KeyboardInterrupt:
            future.cancel()
            raise
        result: RunResult = future.result()
        display.finish(result)
        return result

    def _pump(self, events: queue.Queue[Any], display: Any, loop: Any) -> None:
        while True:
            item = events.get()
            if item is _DONE:
                return
            if isinstance(item, tuple) and isinstance(item[0], _InputRequest):
                request, future = item
                answer = _ask_human(request)
                loop.call_soon_threadsafe(future.set_result, answer)
            elif isinstance(item, AgentEvent):
                display.on_event(item)

    def _insert_code(self, agent: Agent, task: str) -> None:
        assert self._runner is not None
        code = self._runner.run(agent.apropose(task))
        self._shell.set_next_input(code or "# the model wrote no code", replace=False)


def _warn_trusted() -> None:
    # Every cell, not once: the risk is per output, and the setting outlives the cell
    # that chose it when it comes from %config.
    sys.stderr.write(
        "codeact: WARNING: this cell shows the sandbox's outputs as trusted (--trust-outputs "
        "or OutputFirewall.trusted): JavaScript and active HTML written by the model's code "
        "run in your browser with your Jupyter token, which can reach your terminals and "
        "kernels. Use it only for outputs you trust.\n"
    )


def _ask_human(request: _InputRequest) -> str:
    if request.password:
        import getpass

        return getpass.getpass(request.prompt)
    return input(request.prompt)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def load_ipython_extension(ip: Any) -> None:
    ip.register_magics(AgentMagics(shell=ip))


def unload_ipython_extension(ip: Any) -> None:
    magics = ip.magics_manager.registry.get("AgentMagics")
    if magics is not None:
        magics.shutdown()
