"""Every setting of an :class:`~codeact_kernel.agent.loop.Agent`, and the parts it is
composed of (model, policy, kernel session), in one place: the page of ``--help-all``.

The groups with logic of their own keep their traits beside it and are bases here:
tool listing, MCP and approval (``tools/hub.py``), caps on what is kept from the
kernel (``limits.py``), and recovery from a small model's mistakes (``recovery.py``).
Each is configured as ``Agent.<name>``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from traitlets import Bool, Enum, Float, Instance, Int, List, Unicode, default

from ..kernels.factory import make_session
from ..kernels.session import KernelSession
from ..models.llm import LLM
from ..policy.rules import Policy
from ..telemetry.config import Telemetry
from ..tools.hub import ToolOptions
from ..traits import JSONObject
from .limits import OutputLimits
from .prompt import DEFAULT_AUTO_PROMPT, DEFAULT_JSON_PROMPT, DEFAULT_SYSTEM_PROMPT
from .recovery import RecoveryOptions

# The settings each run's trace metadata records (metadata.codeact.agent).
RUN_META_SETTINGS = ("name", "max_steps", "step_timeout", "max_output_chars", "action_format",
                     "max_kept_output_chars", "max_trace_output_bytes", "preimport",
                     "follow_pages", "max_pages", "page_parameters")


class AgentSettings(ToolOptions, OutputLimits, RecoveryOptions):
    """What an agent can be told: its budgets, prompts, action format and tracing, and the
    parts it is composed of, each passed in or built from the same config."""

    name = Unicode("", help="Name of the agent (used when it is managed by another).").tag(
        config=True
    )
    description = Unicode("", help="What the agent does, for an orchestrator's prompt.").tag(
        config=True
    )
    max_steps = Int(10, help="Step budget of one run.").tag(config=True)
    step_timeout = Float(
        60.0, help="Wall-clock seconds one step's code may run before it is interrupted."
    ).tag(config=True)
    max_output_chars = Int(
        10_000,
        help="Characters of a step's output shown to the model; longer output is cut to "
        "head and tail, and kept in the trace and as _outputs[step] in the kernel.",
    ).tag(config=True)
    system_prompt_template = Unicode(
        DEFAULT_SYSTEM_PROMPT,
        help="System prompt template (string.Template): $tools, $imports, $variables and "
        "$preimported are "
        "filled in. Keep an example in it that is unlike the tasks you expect.",
    ).tag(config=True)
    action_format = Enum(
        ["code", "json", "auto"], "code",
        help="How the model acts. 'code': it writes Python run in the sandboxed kernel "
        "(CodeAct). 'json': it calls the tools by native function calling (JSON arguments, "
        "schemas from the tools' signatures; final_answer is a function too), each call run "
        "on the host like the kernel's calls. 'auto': each reply may do either. 'json' and "
        "'auto' need a model with function calling (LLM.function_calling).",
    ).tag(config=True)
    json_prompt_template = Unicode(
        DEFAULT_JSON_PROMPT,
        help="System prompt template with action_format 'json' ($variables is filled in; "
        "the tools travel as function schemas, not in the prompt).",
    ).tag(config=True)
    auto_prompt_template = Unicode(
        DEFAULT_AUTO_PROMPT,
        help="System prompt template with action_format 'auto' ($tools, $imports and "
        "$variables are filled in, as in system_prompt_template).",
    ).tag(config=True)
    vision = Bool(
        False, help="Send images produced by the code to the model (for vision models)."
    ).tag(config=True)
    trace_dir = Unicode("traces", help="Folder for trace notebooks when trace_path is empty.").tag(
        config=True
    )
    trace_path = Unicode("", help="Path of the trace notebook of this agent's session.").tag(
        config=True
    )
    tool_call_timeout = Float(300.0, help="Seconds one host tool call may take.").tag(config=True)
    managed_agents_config = List(
        JSONObject(),
        help="Sub-agents declared in configuration, each a dict with name, description and "
        "optionally model, api_base, api_key_env, tools (['pkg.module:function']), max_steps.",
    ).tag(config=True)

    otel_endpoint = Unicode(
        "",
        help="OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318) that receives every run as "
        "OpenTelemetry GenAI spans, live. Empty: the OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT environment decides; unset too: no export.",
    ).tag(config=True)

    llm = Instance(LLM, help="The model.")
    telemetry = Instance(Telemetry, help="How runs become spans (sizes, redaction).")
    policy = Instance(Policy, help="The AST policy applied before any code runs.")
    session = Instance(KernelSession, help="The sandboxed kernel session.")
    pool = Instance(
        "codeact_kernel.kernels.pool.KernelPool", allow_none=True,
        help="A warm pool the session takes its kernels from (each start takes a fresh, "
        "already-started kernel). None: the session starts its own kernel.",
    )

    def trace_file(self) -> Path:
        """The trace notebook's path: trace_path, else a new name in trace_dir."""
        if self.trace_path:
            return Path(self.trace_path)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^a-z0-9]+", "-", (self.name or "run").lower()).strip("-")
        return Path(self.trace_dir) / f"{stamp}-{slug}-{id(self) % 10000:04d}.ipynb"

    @default("llm")
    def _default_llm(self) -> LLM:
        return LLM(parent=self)

    @default("telemetry")
    def _default_telemetry(self) -> Telemetry:
        return Telemetry(parent=self)

    @default("policy")
    def _default_policy(self) -> Policy:
        return Policy(parent=self)

    @default("session")
    def _default_session(self) -> KernelSession:
        # A local sandbox, or a kernel by connection file or from a gateway, per config;
        # the warm pool serves local sandboxes only, so a configured remote kernel wins.
        return make_session(self, pool=self.pool)
