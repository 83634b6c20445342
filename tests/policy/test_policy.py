"""The AST policy: every rule with code it must reject and code it must let through.

The policy checks code after IPython's own input transformations, so most cases here are
written as the model would write them (``!ls``, ``%%bash``) rather than in transformed form.
The hardening code is run against a real IPython shell, in a subprocess so the process-wide
InteractiveShell singleton of the test run stays untouched.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from traitlets.config import Config

from codeact_kernel.policy.rules import (
    DEFAULT_ALLOWED_MAGICS,
    DEFAULT_AUTHORIZED_IMPORTS,
    RULES,
    Policy,
    Verdict,
)

TOOLS = ("get_population", "search_cities")
WORK = "/work/session"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy()


def check(policy: Policy, code: str) -> Verdict:
    return policy.check(textwrap.dedent(code), tool_names=TOOLS, work_dir=WORK)


def rules_of(verdict: Verdict) -> set[str]:
    return {v.rule for v in verdict.violations}


ALLOWED = {
    "pandas": """
        import numpy as np
        import pandas as pd
        df = pd.DataFrame({"city": ["a", "b"], "pop": [1, 2]})
        df["log"] = np.log(df["pop"])
        summary = df.groupby("city")["pop"].agg(["mean", "std"])
        summary
    """,
    "matplotlib": """
        %matplotlib inline
        import matplotlib.pyplot as plt
        import seaborn as sns
        from scipy import stats
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3])
        plt.show()
    """,
    "sklearn": "from sklearn.model_selection import train_test_split\n",
    "class with dunders": """
        from dataclasses import dataclass
        class Stats:
            def __init__(self, values):
                self.values = list(values)
            def __len__(self):
                return len(self.values)
            def __repr__(self):
                return f"{type(self).__name__}({self.values!r})"
        s = Stats([1, 2])
        print(s.__class__.__name__, s.__dict__, Stats.__name__, len(s))
        super_init = Stats.__init__
    """,
    "timeit": "%timeit sum(range(100))\n",
    "timeit with options": "%timeit -n 10 -r 3 sorted([3, 1, 2])\n",
    "cell timeit": "%%timeit -n 5 data = list(range(10))\nsorted(data)\n",
    "time": "%time total = sum(range(10))\n",
    "cell time": "%%time\nimport math\nmath.sqrt(2)\n",
    "capture": "%%capture out\nprint('quiet')\n",
    "who": "%whos\n",
    "help": "len?\n",
    "format fields": "'{:>10} {name} {0[1]} {x.real}'.format('a', name='b', x=1)\n",
    "format with name": "'{0.__name__}'.format(len)\n",
    "f-string": "x = 3\nprint(f'{x!r:>{x}}')\n",
    "input": "answer = input('Which city? ')\n",
    "calling tools": "pops = [get_population(c) for c in search_cities('FR')]\n",
    "local shadow of a tool name": """
        def helper(get_population):
            search_cities = 1
            return get_population + search_cities
    """,
    "relative open": "with open('data/out.csv', 'w') as f:\n    f.write('x')\n",
    "open in tmp": "open('/tmp/scratch.txt', 'w').write('x')\n",
    "open in the work folder": f"open('{WORK}/data.csv').read()\n",
    "open of a computed path": "name = 'x.csv'\nopen(name)\n",
    "os.path the safe ways": "from os import path\nfrom os.path import join\n"
    "import os.path as osp\n",
    "IPython.display": "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))\n",
    "python that starts like a shell word": "ls = [1]\ncat = 2\nprint(ls, cat - 1)\nenv = {}\n",
    "multi-line call of a shell word": "def cat(*a):\n    return a\ncat (1,\n     2)\n",
    "shell text inside a string": 'doc = """\nls -la\ncd /tmp\npip install x\n"""\n',
    "globals": "'df' in globals() and vars() is not None\n",
    "string .system attribute not called": "coords = {}\nframe = getattr(coords, 'system', None)\n",
    "re.compile and df.eval": "import re\nre.compile('a+')\nimport pandas as pd\n"
    "pd.DataFrame({'a': [1]}).eval('a + 1')\n",
    "top-level await": "async def fetch():\n    return 1\nawait fetch()\n",
}


@pytest.mark.parametrize("code", ALLOWED.values(), ids=ALLOWED.keys())
def test_ordinary_code_is_allowed(policy: Policy, code: str) -> None:
    verdict = check(policy, code)
    assert verdict.allowed, verdict.message
    assert verdict.violations == [] and verdict.message == ""


REJECTED = {
    # imports
    "import subprocess": ("import subprocess\n", "import"),
    "import os": ("import os\n", "import"),
    "from os import system": ("from os import system\n", "import"),
    "import os.path binds os": ("import os.path\n", "import"),
    "importlib": ("import importlib\n", "import"),
    "relative import": ("from . import x\n", "import"),
    # shell, through IPython's transforms
    "!cmd": ("!ls -la\n", "shell"),
    "!cmd assigned": ("files = !ls\n", "shell"),
    "!cmd indented": ("for i in range(2):\n    !echo hi\n", "shell"),
    "%system": ("%system ls\n", "shell"),
    "%sx": ("%sx ls\n", "shell"),
    "%%bash": ("%%bash\nls\n", "shell"),
    "%%sh": ("%%sh\nls\n", "shell"),
    "%%script": ("%%script bash\nls\n", "shell"),
    "get_ipython().system": ("get_ipython().system('ls')\n", "shell"),
    "get_ipython().getoutput": ("get_ipython().getoutput('ls')\n", "shell"),
    "shell method by reference": ("run = get_ipython().system\nrun('ls')\n", "shell"),
    "getattr to system": ("getattr(get_ipython(), 'system')('ls')\n", "shell"),
    "os.system reached through a module": ("import pandas\npandas.io.common.os.system('id')\n",
                                           "shell"),
    # automagic and alias lines
    "ls -la": ("ls -la\n", "shell"),
    "cat file": ("cat data.csv\n", "shell"),
    "rm -rf": ("rm -rf /work\n", "shell"),
    "cd /tmp": ("cd /tmp\n", "magic"),
    "pip install": ("pip install requests\n", "magic"),
    "shell line among python": ("x = 1\nmkdir out\nprint(x)\n", "shell"),
    # magics
    "%%writefile": ("%%writefile x.py\nprint(1)\n", "magic"),
    "%cd": ("%cd /tmp\n", "magic"),
    "%run": ("%run script.py\n", "magic"),
    "%load": ("%load script.py\n", "magic"),
    "%pip": ("%pip install x\n", "magic"),
    "%env": ("%env\n", "magic"),
    "%config": ("%config InteractiveShell.automagic = True\n", "magic"),
    "%reset": ("%reset -f\n", "magic"),
    "run_line_magic disallowed": ("get_ipython().run_line_magic('cd', '/tmp')\n", "magic"),
    "run_cell_magic disallowed": ("get_ipython().run_cell_magic('writefile', 'a', 'b')\n",
                                  "magic"),
    "computed magic name": ("m = 'cd'\nget_ipython().run_line_magic(m, '/')\n", "magic"),
    "var expansion in magic": ("%who {print(1)}\n", "magic"),
    "dollar expansion in magic": ("%matplotlib $backend\n", "magic"),
    "unparsable code under timeit": ("%timeit -qn10 __import__('os')\n", "magic"),
    # the IPython API
    "run_cell": ("get_ipython().run_cell('import os')\n", "ipython-api"),
    "ex through an alias": ("ip = get_ipython()\nip.ex('1')\n", "ipython-api"),
    "alias_manager": ("get_ipython().alias_manager.define_alias('x', 'ls')\n", "ipython-api"),
    "automagic back on": ("get_ipython().automagic = True\n", "ipython-api"),
    "find_line_magic": ("get_ipython().find_line_magic('sx')('ls')\n", "ipython-api"),
    # dangerous builtins
    "__import__": ("__import__('os')\n", "dangerous-builtin"),
    "exec": ("exec('x = 1')\n", "dangerous-builtin"),
    "eval": ("eval('1 + 1')\n", "dangerous-builtin"),
    "eval by reference": ("e = eval\n", "dangerous-builtin"),
    "compile": ("compile('1', '<x>', 'eval')\n", "dangerous-builtin"),
    "breakpoint": ("breakpoint()\n", "dangerous-builtin"),
    "exit": ("exit()\n", "dangerous-builtin"),
    # dunders and frames
    "__subclasses__": ("().__class__.__base__.__subclasses__()\n", "dunder"),
    "__globals__": ("def f(): pass\nf.__globals__\n", "dunder"),
    "__code__": ("(lambda: 0).__code__\n", "dunder"),
    "__closure__": ("f = lambda: 0\nf.__closure__\n", "dunder"),
    "__mro__ chain": ("int.__class__.__mro__\n", "dunder"),
    "__builtins__ name": ("__builtins__\n", "dunder"),
    "__self__ of a builtin": ("print.__self__\n", "dunder"),
    "frame walk": ("def g():\n    yield 1\ng().gi_frame.f_back.f_globals\n", "dunder"),
    "traceback frame": ("try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame\n",
                        "dunder"),
    "getattr with dunder": ("getattr(len, '__self__')\n", "dunder"),
    "subscript with dunder": ("globals()['__builtins__']\n", "dunder"),
    "format walk": ("def f(): pass\n'{0.__globals__}'.format(f)\n", "dunder"),
    "format_map walk": ("'{x.__class__}'.format_map({'x': 1})\n", "dunder"),
    "format walk by index": ("'{0[__builtins__]}'.format(globals())\n", "dunder"),
    "format walk in a spec": ("'{0:{1.__globals__}}'.format(1, f)\n", "dunder"),
    "format walk in a variable": ("t = '{0.__init__.__globals__}'\nt.format(x)\n", "dunder"),
    "f-string walk": ("def f(): pass\nf'{f.__globals__}'\n", "dunder"),
    "pinfo walk": ("%pinfo f.__globals__\n", "dunder"),
    # tool redefinition
    "def a tool": ("def get_population(city):\n    return 100\n", "tool-redefinition"),
    "async def a tool": ("async def search_cities(q):\n    return []\n", "tool-redefinition"),
    "class a tool": ("class get_population:\n    pass\n", "tool-redefinition"),
    "assign a tool": ("get_population = None\n", "tool-redefinition"),
    "lambda a tool": ("get_population = lambda city: 1\n", "tool-redefinition"),
    "import as a tool": ("import math as get_population\n", "tool-redefinition"),
    "from-import as a tool": ("from math import sqrt as search_cities\n", "tool-redefinition"),
    "tuple assign a tool": ("a, search_cities = 1, 2\n", "tool-redefinition"),
    "for target a tool": ("for get_population in range(3):\n    pass\n", "tool-redefinition"),
    "with target a tool": ("with open('x') as get_population:\n    pass\n",
                           "tool-redefinition"),
    "del a tool": ("del get_population\n", "tool-redefinition"),
    "walrus a tool": ("(get_population := 1)\n", "tool-redefinition"),
    "def inside if": ("if True:\n    def get_population(c):\n        return 1\n",
                      "tool-redefinition"),
    "global in a function": ("def f():\n    global get_population\n    get_population = 1\n",
                             "tool-redefinition"),
    "final_answer": ("def final_answer(x):\n    print(x)\n", "tool-redefinition"),
    "tool redefined under %%time": ("%%time\ndef get_population(c):\n    return 1\n",
                                    "tool-redefinition"),
    # open outside the work folder
    "open /etc": ("open('/etc/passwd').read()\n", "open-outside-workdir"),
    "open keyword": ("open(file='/etc/shadow')\n", "open-outside-workdir"),
    "io.open": ("import io\nio.open('/root/.ssh/id_rsa')\n", "open-outside-workdir"),
    "open climbing out": ("open('../../etc/passwd')\n", "open-outside-workdir"),
    "open f-string folder": ("open(f'/etc/{name}')\n", "open-outside-workdir"),
    "open a sibling folder": (f"open('{WORK}-other/x')\n", "open-outside-workdir"),
}


@pytest.mark.parametrize(("code", "rule"), REJECTED.values(), ids=REJECTED.keys())
def test_rule_is_enforced(policy: Policy, code: str, rule: str) -> None:
    verdict = check(policy, code)
    assert not verdict.allowed
    assert rule in rules_of(verdict), verdict.message
    assert rule in RULES
    assert f"[{rule}]" in verdict.message


@pytest.mark.parametrize(
    ("code", "transformed_part"),
    [
        ("!ls", "get_ipython().system('ls')"),
        ("%%bash\nls\n", "run_cell_magic('bash'"),
        ("%%writefile x\nprint(1)\n", "run_cell_magic('writefile', 'x'"),
        ("!!ls", "get_ipython().getoutput('ls')"),
    ],
)
def test_checks_the_code_after_ipython_transforms(
    policy: Policy, code: str, transformed_part: str
) -> None:
    verdict = check(policy, code)
    assert transformed_part in verdict.transformed
    assert not verdict.allowed


def test_syntax_errors_pass_through_for_the_kernel_to_report(policy: Policy) -> None:
    for code in ("def f(:\n    pass\n", "x = (1,\n", "print 'hello'\n", "x = 1;!ls\n"):
        verdict = check(policy, code)
        assert verdict.allowed and verdict.violations == [], code


def test_line_numbers_point_into_the_original_cell(policy: Policy) -> None:
    verdict = check(policy, "%%time\nimport math\nimport subprocess\n")
    assert [(v.rule, v.lineno) for v in verdict.violations] == [("import", 3)]
    verdict = check(policy, "x = 1\n%time eval('x')\n")
    assert [(v.rule, v.lineno) for v in verdict.violations] == [("dangerous-builtin", 2)]


def test_code_inside_capture_is_checked(policy: Policy) -> None:
    assert "shell" in rules_of(check(policy, "%%capture out\n!ls\n"))
    assert "import" in rules_of(check(policy, "%%capture\nimport socket\n"))


def test_message_names_rules_and_fixes(policy: Policy) -> None:
    verdict = check(policy, "import subprocess\n!ls\ndef get_population(c):\n    return 1\n")
    msg = verdict.message
    assert verdict.rules == ["import", "shell", "tool-redefinition"]
    assert "import of 'subprocess' is not allowed" in msg
    assert "Authorized imports:" in msg and "pandas" in msg and "numpy" in msg
    assert "`get_population` is a tool that is already defined in the kernel" in msg
    assert "call it, do not define or stub it" in msg
    assert "line 1" in msg and "line 3" in msg
    # one hint per rule, however many violations
    assert check(policy, "import os\nimport sys\n").message.count("Authorized imports") == 1


def test_open_message_names_the_work_folder(policy: Policy) -> None:
    msg = check(policy, "open('/etc/passwd')").message
    assert WORK in msg and "/tmp" in msg


def test_to_dict_is_json_ready(policy: Policy) -> None:
    data = check(policy, "import os\n").to_dict()
    assert json.loads(json.dumps(data)) == {
        "allowed": False,
        "violations": [{"rule": "import", "message": "import of 'os' is not allowed",
                        "lineno": 1}],
    }


def test_final_answer_is_protected_without_tool_names() -> None:
    verdict = Policy().check("final_answer = print\n")
    assert verdict.rules == ["tool-redefinition"]


def test_authorized_imports_extend_the_defaults() -> None:
    policy = Policy(authorized_imports=["requests", "bs4"])
    assert policy.check("import requests\nfrom bs4 import BeautifulSoup\nimport numpy").allowed
    assert not policy.check("import socket").allowed
    assert set(DEFAULT_AUTHORIZED_IMPORTS) <= set(policy.effective_imports())
    assert policy.check("import numpy.linalg\nfrom matplotlib import pyplot").allowed


def test_star_allows_every_import() -> None:
    policy = Policy(authorized_imports=["*"])
    assert policy.check("import os, subprocess, importlib").allowed
    assert policy.effective_imports() == ("*",)
    assert "shell" in {v.rule for v in policy.check("import os\nos.system('x')").violations}


def test_defaults_can_be_dropped() -> None:
    policy = Policy(include_default_imports=False, authorized_imports=["math"])
    assert policy.check("import math").allowed
    assert not policy.check("import numpy").allowed
    assert policy.effective_imports() == ("math",)


def test_allowed_magics_are_configurable() -> None:
    strict = Policy(allowed_magics=[])
    assert "magic" in {v.rule for v in strict.check("%timeit 1").violations}
    loose = Policy(allowed_magics=[*DEFAULT_ALLOWED_MAGICS, "env"])
    assert loose.check("%env").allowed


def test_open_rule_is_configurable() -> None:
    assert Policy(block_open_outside_work=False).check("open('/etc/passwd')").allowed
    assert Policy(open_allowed_dirs=["/data"]).check("open('/data/x.csv')").allowed
    assert not Policy(open_allowed_dirs=[]).check("open('/tmp/x')").allowed
    # with no work folder known, only climbing out with '..' is visible
    assert Policy().check("open('x.csv')").allowed
    assert not Policy().check("open('../x.csv')").allowed


def test_every_option_is_documented_config() -> None:
    traits = Policy.class_traits(config=True)
    assert set(traits) == {
        "authorized_imports", "include_default_imports", "allowed_magics",
        "block_open_outside_work", "open_allowed_dirs", "network_imports",
    }
    for name, trait in traits.items():
        assert trait.help and len(trait.help) > 20, name


def test_config_object_reaches_the_policy() -> None:
    config = Config()
    config.Policy.authorized_imports = ["requests"]
    config.Policy.allowed_magics = ["time"]
    policy = Policy(config=config)
    assert policy.check("import requests\n%time 1").allowed
    assert not policy.check("%timeit 1").allowed


def test_default_magics_exclude_shell_and_files() -> None:
    dangerous = {"system", "sx", "sc", "bash", "sh", "script", "writefile", "run", "load",
                 "cd", "env", "pip", "conda", "config", "reset", "alias", "store", "!"}
    assert not dangerous & set(DEFAULT_ALLOWED_MAGICS)


def test_deeply_nested_code_does_not_crash(policy: Policy) -> None:
    check(policy, "x = " + "-" * 5000 + "1\n")
    check(policy, "x = " + "(" * 150 + "1" + ")" * 150 + "\n")
