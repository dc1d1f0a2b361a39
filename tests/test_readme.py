"""Every Python block in README.md runs as written, and prints what its comments say.

A ``print(...)  # -> text`` line must print exactly ``text``. Blocks run in order in
one namespace, like a reader pasting them into one session. The LangChain block uses a
``chain`` the reader already has; the test provides one built on LangChain's own fake
chat model.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_EXPECT = re.compile(r"^\s*print\(.*\)\s+# -> (.*)$")


def _blocks() -> list[str]:
    return _BLOCK.findall(README.read_text())


def _fake_chain():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate

    class Model(GenericFakeChatModel):
        model_name: str = "gpt-5.4-mini"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            msg = result.generations[0].message
            msg.usage_metadata = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
            msg.response_metadata = {"model_name": "gpt-5.4-mini"}
            return result

    model = Model(messages=iter([AIMessage(content="It counts and bounds tokens.")]))
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | model


def _mock_index(monkeypatch):
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    class PricedMockLLM(MockLLM):  # MockLLM reports its model as "unknown"
        @property
        def metadata(self):
            meta = super().metadata
            meta.model_name = "gpt-5.4-mini"
            return meta

    # LlamaIndex's Settings is global: set it through monkeypatch so it is restored afterwards
    monkeypatch.setattr(Settings, "_llm", PricedMockLLM(max_tokens=16))
    monkeypatch.setattr(
        Settings, "_embed_model", MockEmbedding(embed_dim=8, model_name="text-embedding-3-small")
    )
    return VectorStoreIndex.from_documents([Document(text="tokenward counts and bounds tokens.")])


def test_readme_has_the_two_setup_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_readme_python_blocks_run_and_print_what_they_claim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may create ledger files
    blocks = _blocks()
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        if "chain.invoke" in block:
            namespace["chain"] = _fake_chain()
        if "index.as_query_engine" in block:
            namespace["index"] = _mock_index(monkeypatch)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"README.md block {i + 1}", "exec"), namespace)
        printed = out.getvalue().splitlines()
        expected = [m.group(1).strip() for line in block.splitlines() if (m := _EXPECT.match(line))]
        prints = [line for line in block.splitlines() if line.strip().startswith("print(")]
        if expected:
            assert len(prints) == len(printed), f"block {i + 1}: one line per print() expected"
            for line, got in zip(prints, printed):
                m = _EXPECT.match(line)
                if m:
                    assert got == m.group(1).strip(), (
                        f"block {i + 1}: {line.strip()!r} printed {got!r}"
                    )
    from tokenward.llama_index import instrument

    for value in list(namespace.values()):  # leave LlamaIndex's global dispatcher as we found it
        if type(value).__name__ == "Accountant":
            instrument(value).detach()  # the same handle per accountant
            value.close()
