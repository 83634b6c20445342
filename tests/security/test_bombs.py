"""Decompression and decoding bombs in values the sandbox hands the host.

The kernel sends a final answer whose Parquet or .npy blob is small on the wire
but huge once decoded. The host must refuse it from the file's own metadata,
before materialising anything, with an error that names the limit setting.
Each attack runs against a real tool server in a fresh process (probe.py),
from code in a real sandboxed kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import probe

pytestmark = pytest.mark.timeout(300)

MIB = 1024 * 1024
LIMIT = 64 * MIB
LIMIT_NAME = "max_answer_bytes"

# Sends a final answer whose value is the raw blob ``blob`` of kind ``kind``, as a
# hostile kernel can (the client and its token are in the kernel's memory).
SEND_RAW = """
import json, sys
_rpc = sys.modules['_codeact_rpc']
def send_raw(kind, blob, **extra):
    client = _rpc._client
    value = {'$codeact': kind, 'blob': 0, **extra}
    header = {'v': 1, 'tool': 'final_answer', 'args': [], 'kwargs': {'value': value},
              'notes': [], 'accept': client.accept, 'token': client.token}
    try:
        client._roundtrip('final_answer', [json.dumps(header).encode(), blob])
        print('ACCEPTED', len(blob))
    except Exception as exc:
        print('REFUSED', type(exc).__name__, exc)
"""


def attack(tmp_path: Path, code: str) -> dict[str, Any]:
    return probe.run({
        "scenario": "tool_attack", "tmp": str(tmp_path), "code": SEND_RAW + code,
        "server": {"max_message_bytes": 256 * MIB}, "server_attrs": {LIMIT_NAME: LIMIT},
    })


def assert_refused(report: dict[str, Any], bound: int = 80 * MIB) -> None:
    out = report["attack_stdout"]
    assert "REFUSED" in out and LIMIT_NAME in out, (out, report["attack_error"])
    assert report["final_kind"] is None
    assert report["rss_growth"] <= bound, report["rss_growth"] / MIB
    assert report["legit_stdout"] == "4\n"


def test_parquet_string_bomb_is_refused_from_metadata(tmp_path: Path) -> None:
    # 25 copies of one 8 MB string: 200 MB decoded, a few hundred KB compressed.
    report = attack(tmp_path, (
        "import io, pandas as pd\n"
        "buf = io.BytesIO()\n"
        "pd.DataFrame({'s': ['x' * 8_000_000] * 25}).to_parquet(buf, compression='zstd')\n"
        "print('WIRE', len(buf.getvalue()))\n"
        "send_raw('dataframe', buf.getvalue(), format='parquet')\n"
    ))
    assert_refused(report)


def test_parquet_run_length_bomb_is_refused_from_metadata(tmp_path: Path) -> None:
    # 30 million zeros: 240 MB decoded, a few KB on the wire (RLE / dictionary).
    report = attack(tmp_path, (
        "import io, numpy as np, pandas as pd\n"
        "buf = io.BytesIO()\n"
        "pd.DataFrame({'a': np.zeros(30_000_000, dtype='int64')}).to_parquet(buf)\n"
        "send_raw('dataframe', buf.getvalue(), format='parquet')\n"
    ))
    assert_refused(report)


def test_parquet_nested_list_bomb_is_refused_from_metadata(tmp_path: Path) -> None:
    # One pyarrow chunk of a 1M-element list, repeated 30 times: 240 MB of leaves.
    report = attack(tmp_path, (
        "import io, pyarrow as pa, pyarrow.parquet as pq\n"
        "chunk = pa.array([[0.0] * 1_000_000])\n"
        "table = pa.table({'l': pa.chunked_array([chunk] * 30)})\n"
        "buf = io.BytesIO()\n"
        "pq.write_table(table, buf, compression='zstd')\n"
        "send_raw('dataframe', buf.getvalue(), format='parquet')\n"
    ))
    assert_refused(report)


def test_npy_larger_than_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    report = attack(tmp_path, (
        "import io, numpy as np\n"
        "buf = io.BytesIO()\n"
        "np.save(buf, np.zeros(10_000_000), allow_pickle=False)\n"
        "send_raw('ndarray', buf.getvalue())\n"
    ))
    # The 80 MB blob itself crossed the socket (it is under the message limit);
    # what must not happen is a decoded copy on top of it.
    assert_refused(report, bound=200 * MIB)


def test_answers_under_the_limit_still_cross(tmp_path: Path) -> None:
    report = attack(tmp_path, (
        "import numpy as np, pandas as pd\n"
        "final_answer(pd.DataFrame({'s': ['ab'] * 1000, 'n': np.arange(1000)}))\n"
        "print('SENT')\n"
    ))
    assert "SENT" in report["attack_stdout"], report
    assert report["final_kind"] == "dataframe"
