"""Provider-side exact counts (Anthropic messages.count_tokens, Gemini countTokens) through
the real SDK clients pointed at a local fake server: prefix cache, timeout, fallback, and the
Accountant's hard-budget reservation using them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenward.counting import (
    AnthropicCountTokens,
    GeminiCountTokens,
    ProviderCounter,
    count_messages,
    get_counter,
    register_tokenizer,
    unregister_tokenizer,
)


class FakeProvider:
    """Answers Anthropic ``/v1/messages/count_tokens`` and Gemini ``:countTokens`` with a
    deterministic count (characters of the request's text / 4) and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.delay = 0.0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(
                        b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
                    )
                    return
                n = outer.count(body)
                payload = {"input_tokens": n} if "count_tokens" in self.path else {"totalTokens": n}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def count(body: dict) -> int:
        return (
            7
            + len(json.dumps(body.get("messages") or body.get("contents"))) // 4
            + len(json.dumps(body.get("tools") or [])) // 4
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def anthropic_client(fake):
    import anthropic

    return anthropic.Anthropic(api_key="test-key", base_url=fake.url)


@pytest.fixture
def gemini_client(fake):
    from google import genai
    from google.genai import types

    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=fake.url))


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    for pattern in ("claude-*", "gemini-*"):
        unregister_tokenizer(pattern)


def convo(n: int) -> list[dict]:
    out = [{"role": "system", "content": "You are a support agent for ACME."}]
    for i in range(n):
        out.append(
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": f"Message {i}: " + "details " * (i + 1),
            }
        )
    return out


def test_anthropic_counts_come_from_the_endpoint(fake, anthropic_client):
    register_tokenizer("claude-*", AnthropicCountTokens(anthropic_client))
    msgs = convo(3)
    res = count_messages(msgs, "claude-sonnet-4-5")
    assert res.exact is True and res.method == "anthropic:count_tokens"
    path, body = fake.requests[-1]
    assert path == "/v1/messages/count_tokens" and body["model"] == "claude-sonnet-4-5"
    assert body["system"] == [{"type": "text", "text": "You are a support agent for ACME."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert res.tokens == FakeProvider.count(body)


def test_growing_conversation_costs_one_request_per_new_message(fake, anthropic_client):
    provider = AnthropicCountTokens(anthropic_client)
    register_tokenizer("claude-*", provider)
    msgs = convo(1)
    for i in range(2, 12):
        count_messages(msgs, "claude-sonnet-4-5")
        count_messages(msgs, "claude-sonnet-4-5")  # the same prefix again: cached
        msgs = convo(i)
    assert provider.requests == len(fake.requests) == 10
    # per-message counts (trimming) come from consecutive cached prefixes, no request
    counter = get_counter("claude-sonnet-4-5")
    before = len(fake.requests)
    full = counter.count_messages(convo(10))
    prev = counter.count_messages(convo(9))
    assert counter.count_message(convo(10)[-1]) == full - prev
    assert len(fake.requests) == before


def test_tools_and_tool_calls_are_converted(fake, anthropic_client):
    register_tokenizer("claude-*", AnthropicCountTokens(anthropic_client))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Find an order",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
            },
        }
    ]
    msgs = [
        {"role": "user", "content": "Where is order 42?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"id": "42"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "shipped"},
    ]
    count_messages(msgs, "claude-sonnet-4-5", tools=tools, tool_choice="required")
    body = fake.requests[-1][1]
    assert body["tools"] == [
        {
            "name": "lookup",
            "description": "Find an order",
            "input_schema": tools[0]["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"id": "42"}}
    ]
    assert body["messages"][2]["content"][0]["type"] == "tool_result"


def test_timeout_falls_back_to_the_flagged_estimate_and_cools_down(fake, anthropic_client, caplog):
    provider = AnthropicCountTokens(anthropic_client, timeout=0.2, cooldown=60)
    register_tokenizer("claude-*", provider)
    fake.delay = 1.0
    msgs = convo(2)
    res = count_messages(msgs, "claude-sonnet-4-5")
    estimate = get_counter("claude-sonnet-4-5").fallback.count_messages(msgs)
    assert res.exact is False and res.tokens == estimate and "fallback" in res.method
    assert "token counting failed" in caplog.text
    fake.delay = 0.0
    before = len(fake.requests)
    assert count_messages(convo(3), "claude-sonnet-4-5").exact is False  # cooling down
    assert len(fake.requests) == before


def test_server_error_falls_back(fake, anthropic_client):
    register_tokenizer("claude-*", AnthropicCountTokens(anthropic_client))
    fake.status = 529
    res = count_messages(convo(2), "claude-sonnet-4-5")
    assert res.exact is False and len(fake.requests) == 1  # no retries


def test_gemini_counts_come_from_the_endpoint(fake, gemini_client):
    provider = GeminiCountTokens(gemini_client)
    register_tokenizer("gemini-*", provider)
    msgs = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Plan a trip."},
    ]
    res = count_messages(msgs, "gemini-3.5-flash")
    path, body = fake.requests[-1]
    assert path.endswith("models/gemini-3.5-flash:countTokens")
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert res.exact is True and res.tokens == FakeProvider.count(body)
    count_messages(msgs, "gemini-3.5-flash")
    assert provider.requests == 1
    # the Developer API takes no system instruction: counted as a leading turn, flagged
    res = count_messages([{"role": "system", "content": "Be brief."}, *msgs], "gemini-3.5-flash")
    assert res.exact is False and fake.requests[-1][1]["contents"][0]["parts"] == [
        {"text": "Be brief."}
    ]


def test_hard_budget_reservation_uses_the_provider_count(fake, anthropic_client):
    from tokenward import Accountant, Budget, Budgets
    from tokenward.errors import BudgetExceededError

    register_tokenizer("claude-*", AnthropicCountTokens(anthropic_client))
    msgs = convo(6)
    exact = count_messages(msgs, "claude-sonnet-4-5").tokens
    budgets = Budgets(Budget("cap", limit_tokens=exact + 10, mode="hard"))
    acct = Accountant(budgets=budgets)
    est = acct.preflight("r1", "claude-sonnet-4-5", messages=msgs, max_output_tokens=10)
    assert est.prompt_tokens == exact and est.exact is True
    acct.release("r1")
    with pytest.raises(BudgetExceededError):
        acct.preflight("r2", "claude-sonnet-4-5", messages=msgs, max_output_tokens=11)


def test_provider_counter_type():
    class Client:
        def with_options(self, **kw):
            return self

    provider = AnthropicCountTokens(Client())
    c = provider.for_model("claude-x", "anthropic")
    assert isinstance(c, ProviderCounter) and provider.for_model("claude-x", "anthropic") is c
    assert c.count_text("hello world") == c.fallback.count_text("hello world")
    with pytest.raises(ValueError):
        AnthropicCountTokens(Client(), timeout=0)
