"""kernel_side/harden.py in a real IPython shell: no aliases, no automagic, even after %reset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeact_kernel.kernel_side import source

HARDENING_SCRIPT = """
import json, os, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
os.chdir(sys.argv[1])
facts = {}
facts["alias_before"] = shell.run_cell("mkdir made_by_alias").success
facts["dir_before"] = os.path.isdir("made_by_alias")
result = shell.run_cell(sys.argv[2], store_history=False, silent=True)
facts["hardening_ok"] = result.success
facts["leftover_names"] = [k for k in shell.user_ns if "harden" in k]
facts["alias_after"] = shell.run_cell("mkdir made_after").success
facts["dir_after"] = os.path.isdir("made_after")
ls = shell.run_cell("ls")
facts["ls_error"] = type(ls.error_before_exec or ls.error_in_exec).__name__
facts["cd_after"] = shell.run_cell("cd /").success and os.getcwd() == "/"
shell.run_cell("%reset -f")
facts["alias_after_reset"] = shell.run_cell("mkdir made_after_reset").success
facts["dir_after_reset"] = os.path.isdir("made_after_reset")
facts["aliases_left"] = list(shell.alias_manager.aliases)
facts["automagic"] = shell.automagic
print("FACTS" + json.dumps(facts))
"""


def test_hardening_turns_off_aliases_and_automagic(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HARDENING_SCRIPT, str(tmp_path), source("harden.py")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FACTS"))
    facts = json.loads(line[len("FACTS"):])
    # the experiment is meaningful only if the alias really ran before hardening
    assert facts["alias_before"] and facts["dir_before"]
    assert facts["hardening_ok"] and facts["leftover_names"] == []
    assert not facts["alias_after"] and not facts["dir_after"]
    assert facts["ls_error"] == "NameError"
    assert not facts["cd_after"]
    assert not facts["alias_after_reset"] and not facts["dir_after_reset"]
    assert facts["aliases_left"] == [] and facts["automagic"] is False
