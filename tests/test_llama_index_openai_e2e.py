"""End to end with the real ``llama-index-llms-openai`` and ``llama-index-embeddings-openai``
clients against a local fake OpenAI server (a threaded ``http.server`` in this file).

The server answers chat completions (first a tool call, then text) and embeddings, each
with a ``usage`` block computed from the request it actually received: chat prompts with
OpenAI's chat formula, embedding inputs with ``cl100k_base`` (the text the client sent,
newlines already replaced by spaces). The ledger must hold exactly the server's numbers,
and the pre-flight estimate of the second chat call (whose history holds the assistant's
tool call in both of LlamaIndex's shapes) must equal what the server counted.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("llama_index.llms.openai")
pytest.importorskip("llama_index.embeddings.openai")

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks import CallbackManager
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI

from tokenward import Accountant
from tokenward.counting import get_counter, get_encoding
from tokenward.llama_index import TokenwardCallbackHandler, instrument
from tokenward.messages import Message

CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"


class FakeOpenAI(BaseHTTPRequestHandler):
    """``/v1/chat/completions`` and ``/v1/embeddings``; every usage it reports is logged."""

    usages: list[tuple[str, dict[str, int]]]  # set on the server's handler class

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/chat/completions"):
            payload = self._chat(body)
        elif self.path.endswith("/embeddings"):
            payload = self._embeddings(body)
        else:
            self.send_error(404)
            return
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        counter = get_counter(body["model"])
        received = [Message.from_openai(m) for m in body["messages"]]
        prompt = counter.count_messages(received, tools=body.get("tools"))
        if received[-1].role == "tool":
            message: dict[str, Any] = {"role": "assistant", "content": "Sunny in Oslo."}
            completion = counter.count_text("Sunny in Oslo.")
        else:
            arguments = json.dumps({"city": "Oslo"})
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_oslo",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            }
            completion = counter.count_text("get_weather" + arguments) + 7
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        self.usages.append(("chat", usage))
        return {
            "id": f"chatcmpl-{len(self.usages)}",
            "object": "chat.completion",
            "created": 1_800_000_000,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
                }
            ],
            "usage": usage,
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        encoding = get_encoding("cl100k_base")  # what OpenAI bills text-embedding-3-* with
        tokens = sum(len(encoding.encode(t)) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self.usages.append(("embedding", usage))
        vector = [0.25] * 8
        packed: Any = vector
        if body.get("encoding_format") == "base64":
            packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": packed} for i in range(len(texts))
            ],
            "usage": usage,
        }


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, dict[str, int]]]]]:
    usages: list[tuple[str, dict[str, int]]] = []
    handler = type("Handler", (FakeOpenAI,), {"usages": usages})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", usages
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class RecordingAccountant(Accountant):
    """An Accountant that keeps every pre-flight estimate."""

    def __init__(self) -> None:
        super().__init__()
        self.estimates: list[Any] = []

    def preflight(self, *args: Any, **kwargs: Any) -> Any:
        estimate = super().preflight(*args, **kwargs)
        self.estimates.append(estimate)
        return estimate


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def run_app(llm: OpenAI, embed: OpenAIEmbedding) -> None:
    """A tool-calling turn, then an embedding batch, as an application would make them."""
    tool = FunctionTool.from_defaults(get_weather)
    question = ChatMessage(role="user", content="Weather in Oslo?")
    first = llm.chat_with_tools([tool], chat_history=[question])
    (call,) = llm.get_tool_calls_from_response(first)
    result = ChatMessage(
        role="tool",
        content=get_weather(**call.tool_kwargs),
        additional_kwargs={"tool_call_id": call.tool_id, "name": call.tool_name},
    )
    llm.chat([question, first.message, result])
    embed.get_text_embedding_batch(
        ["Oslo is the capital\nof Norway.", "Fjords,\n\nmountains\nand rain."]
    )


@pytest.mark.parametrize("adapter", ["instrument", "callback_handler"])
def test_ledger_equals_the_servers_usage(server, adapter):
    url, usages = server
    acc = RecordingAccountant()
    client = {"api_key": "sk-test", "api_base": url, "max_retries": 0}
    llm = OpenAI(model=CHAT_MODEL, **client)
    embed = OpenAIEmbedding(model=EMBED_MODEL, **client)
    if adapter == "instrument":
        with instrument(acc):
            run_app(llm, embed)
    else:
        handler = TokenwardCallbackHandler(acc)
        manager = CallbackManager([handler])
        llm.callback_manager = manager
        embed.callback_manager = manager
        run_app(llm, embed)
        assert handler.prompt_llm_token_count == sum(
            u["prompt_tokens"] for kind, u in usages if kind == "chat"
        )

    events = list(acc.ledger.events())
    assert [(e.kind, e.model) for e in events] == [
        ("chat", CHAT_MODEL),
        ("chat", CHAT_MODEL),
        ("embedding", EMBED_MODEL),
    ]
    server_chat = [u for kind, u in usages if kind == "chat"]
    assert [(e.usage.input, e.usage.output) for e in events[:2]] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in server_chat
    ]
    assert not any(e.estimated for e in events)
    assert (events[0].tool_calls, events[0].tool_names) == (1, ("get_weather",))
    assert (events[1].tool_calls, events[1].tool_names) == (0, ())
    # the second call's history carries the tool call twice (additional_kwargs and a
    # ToolCallBlock): the estimate counted it once, as the client sent it
    chat_estimates = [e for e in acc.estimates if e.model == CHAT_MODEL]
    assert [e.prompt_tokens for e in chat_estimates] == [u["prompt_tokens"] for u in server_chat]
    # embeddings: counted as sent (OpenAIEmbedding replaces "\n" with " "), exact
    (embedded,) = [u for kind, u in usages if kind == "embedding"]
    assert events[2].usage.input == embedded["prompt_tokens"]
    assert events[2].cost is not None and events[0].cost is not None
