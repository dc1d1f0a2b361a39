"""Every LangChain example runs offline as a subprocess and prints what its docstring promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("TOKENWARD_DB", "LANGSMITH_TRACING")
    }
    env.update(
        {
            "NO_PROXY": "*",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONWARNINGS": "ignore",
        }
    )
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def table(out: str, first_col: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == first_col:
            rows[" ".join(cells[:2])] = cells
    return rows


@pytest.mark.timeout(300)
def test_chain_costs_example():
    out = run_example("langchain_chain_costs.py")
    assert "carol's block: 3 calls, 63 tokens" in out
    assert "denied: budget=daily-per-user scope=user_id=alice spent=90 limit=120" in out
    assert "alice: 8 calls denied before reaching the model" in out
    assert "alert: budget daily-per-user (user_id=alice) reached 75%" in out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split()[:1] in (["alice"], ["bob"], ["carol"], ["total"]) and len(line.split()) == 5
    }
    # gpt-5.4-mini: $0.75 input, $4.50 output per 1M tokens (genai-prices)
    assert rows["alice"] == ["4", "66", "24", "0.0001575"]
    assert rows["bob"] == ["1", "17", "6", "0.0000398"]
    assert rows["carol"] == ["3", "45", "18", "0.0001148"]
    assert rows["total"] == ["8", "128", "48", "0.0003120"]


@pytest.mark.timeout(300)
def test_memory_trimmer_example():
    out = run_example("langchain_memory_trimmer.py")
    assert "every tool result kept with its tool call: True" in out
    turns = {
        int(m.group(1)): (int(m.group(2)), int(m.group(3)))
        for m in re.finditer(r"^\s*(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    }
    assert turns[0][0] == turns[0][1]  # short conversation: nothing trimmed
    assert all(trimmed <= 400 for trimmed, _ in turns.values())
    assert turns[23][1] > 3 * turns[23][0]  # full history keeps growing
    saved = int(re.search(r"trimming saved (\d+)% of input tokens", out).group(1))
    assert saved >= 50
    assert "estimated_events=24" in out  # the fake model reports no usage: counted


@pytest.mark.timeout(300)
def test_rag_packer_example():
    out = run_example("langchain_rag_packer.py")
    m = re.search(r"12 candidates -> kept (\d+) \((\d+) of 260 tokens, (\d+)% .* exact=True\)", out)
    assert m and int(m.group(2)) <= 260
    kept_pct = int(m.group(3))
    greedy_pct = int(re.search(r"greedy by score would keep \d+ documents, (\d+)%", out).group(1))
    assert kept_pct > greedy_pct
    rows = table(out, "erin") | table(out, "frank") | table(out, "indexer")
    assert rows["erin chat"][2] == "2" and rows["frank chat"][2] == "1"
    assert rows["indexer embedding"][2] == "5"


@pytest.mark.timeout(300)
def test_agent_budget_example():
    out = run_example("langchain_agent_budget.py")
    assert "task 0: gpt-5.4     2 calls, 0 degraded" in out
    assert re.search(r"task \d+: gpt-5.4-nano 2 calls, 2 degraded", out)
    m = re.search(
        r"task (\d+): refused before calling a model: daily-per-user spent \$([\d.]+) of \$0.07",
        out,
    )
    assert m and float(m.group(2)) <= 0.07
    assert "henry (own budget): 2 calls, $0.00750" in out
    assert "alert: budget daily-per-user (user_id=grace) reached 90%" in out
    assert re.search(r"grace: spent \$0\.0\d+ of \$0\.07", out)
