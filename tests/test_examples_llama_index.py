"""Every LlamaIndex example (and the README's three-line snippet) runs offline as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def offline_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("TOKENWARD_DB",)
    }
    # any accidental network call fails fast instead of reaching the internet
    env.update(
        {
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "localhost,127.0.0.1",
            "PYTHONWARNINGS": "ignore",
            "TIKTOKEN_CACHE_DIR": env.get("TIKTOKEN_CACHE_DIR", ""),
        }
    )
    if not env["TIKTOKEN_CACHE_DIR"]:
        del env["TIKTOKEN_CACHE_DIR"]
    return env


def run(args: list[str], cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        [PYTHON, *args], capture_output=True, text=True, env=offline_env(), timeout=240, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.timeout(300)
def test_query_costs_example():
    out = run([str(EXAMPLES / "llamaindex_query_costs.py")])
    assert "alice: What is the capital of France? -> Paris is the capital of France" in out
    assert "bob: What is the capital of Italy? -> Rome is the capital of Italy" in out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if "calls=" in line}
    assert "calls=2 input=147 output=22" in rows[("alice", "completion")]
    assert "calls=1" in rows[("(indexing)", "embedding")]
    costs = [Decimal(m) for m in re.findall(r"cost=\$([0-9.]+)", out)]
    total = Decimal(re.search(r"total recorded: 7 events, \$([0-9.]+)", out).group(1))
    assert sum(costs) == total > 0
    answered = out.count(": answered")
    denied = out.count("denied before the model")
    assert answered == 3 and denied == 2
    assert f"model calls made: {answered};" in out  # a denied query never reached the model
    assert "alert: budget daily-per-user (user_id=carol) reached 50%" in out


@pytest.mark.timeout(300)
def test_context_packer_example():
    out = run([str(EXAMPLES / "llamaindex_context_packer.py")])
    assert "retrieved: 60 nodes" in out
    plain = re.search(r"without packing: (\d+) LLM calls, (\d+) input tokens", out)
    packed = re.search(r"with TokenBudgetPostprocessor: (\d+) LLM call, (\d+) input tokens", out)
    assert int(plain.group(1)) >= 2 and int(packed.group(1)) == 1
    assert int(packed.group(2)) < int(plain.group(2))
    budget = int(re.search(r"budget: (\d+) tokens", out).group(1))
    used = int(re.search(r"kept \d+ nodes, (\d+) tokens", out).group(1))
    assert used <= budget
    assert "duplicate=1" in out and "certified >= 100% of the optimum" in out


@pytest.mark.timeout(300)
def test_chat_memory_example():
    out = run([str(EXAMPLES / "llamaindex_chat_memory.py")])
    assert "stored history: 163 messages" in out
    buffer_line = next(line for line in out.splitlines() if line.startswith("ChatMemoryBuffer"))
    ours_line = next(line for line in out.splitlines() if line.startswith("TokenwardChatMemory"))
    assert "system kept: False" in buffer_line
    assert "system kept: True, pinned kept: True" in ours_line
    assert int(re.search(r"(\d+) tokens", ours_line).group(1)) <= 600
    assert "tool results without their call: False" in out
    for line in out.splitlines():
        if line.startswith("turn "):
            assert int(re.search(r"(\d+) tokens", line).group(1)) <= 600
            assert "starts S" in line
    assert "stored now: 167 messages" in out


README_SNIPPET = """
from tokenward.accountant import Accountant
from tokenward.llama_index import instrument

instrument(Accountant(ledger="usage.db"))           # every LLM and embedding call, priced
response = index.as_query_engine().query("What does tokenward do?")
"""


@pytest.mark.timeout(300)
def test_readme_three_lines_snippet_runs(tmp_path):
    setup = textwrap.dedent("""
        from llama_index.core import Document, Settings, VectorStoreIndex
        from llama_index.core.base.llms.types import LLMMetadata
        from llama_index.core.embeddings import MockEmbedding
        from llama_index.core.llms import MockLLM

        class OfflineLLM(MockLLM):  # stands in for OpenAI(model="gpt-5.4-mini")
            @property
            def metadata(self):
                return LLMMetadata(model_name="gpt-5.4-mini", num_output=12)

        Settings.llm = OfflineLLM(max_tokens=12)
        Settings.embed_model = MockEmbedding(embed_dim=8, model_name="text-embedding-3-small")
        index = VectorStoreIndex.from_documents([Document(text="tokenward prices LLM calls.")])
    """)
    check = textwrap.dedent("""
        from tokenward.ledger import open_ledger
        rows = open_ledger("usage.db").summary(by=["kind"])
        print(sorted((r.dims["kind"], r.calls, r.output, r.cost > 0) for r in rows))
    """)
    script = tmp_path / "snippet.py"
    script.write_text(setup + README_SNIPPET)  # the snippet verbatim
    run([str(script)], cwd=tmp_path)
    out = run(["-c", check], cwd=tmp_path)
    # the query: one LLM call (12 tokens out) and one query embedding, both priced
    assert out.strip() == "[('completion', 1, 12, True), ('embedding', 1, 0, True)]"
