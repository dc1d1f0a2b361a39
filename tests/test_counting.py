"""Exact counting: tiktoken texts, the OpenAI chat formula, tool schemas, cache, truncate."""

from __future__ import annotations

import json

import pytest

from tokenward.counting import (
    EstimatorCounter,
    TiktokenCounter,
    TokenCount,
    TokenCounter,
    count_messages,
    count_text,
    get_counter,
    get_encoding,
    render_functions,
)
from tokenward.messages import Message, ToolCall


@pytest.fixture(scope="module")
def o200k() -> TiktokenCounter:
    return TiktokenCounter(get_encoding("o200k_base"), model="gpt-4o")


@pytest.fixture(scope="module")
def cl100k() -> TiktokenCounter:
    return TiktokenCounter(get_encoding("cl100k_base"), model="gpt-3.5-turbo")


# Computed once with tiktoken 0.14 (the Japanese line is the OpenAI cookbook's example:
# 8 tokens in o200k_base, 9 in cl100k_base).
TEXTS = [
    ("hello world", 2, 2),
    ("tiktoken is great!", 6, 6),
    ("antidisestablishmentarianism", 6, 6),
    ("お誕生日おめでとう", 8, 9),
    ("def f(x):\n    return x * 2\n", 11, 11),
    ('{"a": [1, 2, 3], "b": null}', 17, 17),
    ("<|endoftext|>", 7, 7),  # special-token text is plain text, never an error
]


@pytest.mark.parametrize(("text", "n_o200k", "n_cl100k"), TEXTS)
def test_known_text_counts(o200k, cl100k, text, n_o200k, n_cl100k):
    assert o200k.count_text(text) == n_o200k
    assert cl100k.count_text(text) == n_cl100k


def test_count_text_helper_reports_exactness():
    assert count_text("hello world", "gpt-4o") == TokenCount(2, True, "tiktoken:o200k_base")
    assert count_text("お誕生日おめでとう", "gpt-4") == TokenCount(9, True, "tiktoken:cl100k_base")
    assert count_text("", "gpt-4o").tokens == 0


def test_model_to_encoding_rules():
    for model, name in [
        ("gpt-4o", "tiktoken:o200k_base"),
        ("gpt-4o-mini-2024-07-18", "tiktoken:o200k_base"),
        ("openai/gpt-4.1", "tiktoken:o200k_base"),
        ("o3-mini", "tiktoken:o200k_base"),
        ("gpt-5", "tiktoken:o200k_base"),
        ("gpt-4", "tiktoken:cl100k_base"),
        ("gpt-3.5-turbo-0125", "tiktoken:cl100k_base"),
        ("text-embedding-3-small", "tiktoken:cl100k_base"),
    ]:
        c = get_counter(model)
        assert c.name == name, model
        assert c.exact is True
    est = get_counter("claude-sonnet-4-5")
    assert isinstance(est, EstimatorCounter)
    assert est.exact is False and est.provider == "anthropic"
    assert isinstance(est, TokenCounter) and isinstance(get_counter("gpt-4o"), TokenCounter)
    assert get_counter("gpt-4o") is get_counter("gpt-4o")  # cached per model


# The OpenAI cookbook ("How to count tokens with tiktoken") example conversation:
# the API reported 129 prompt tokens for gpt-3.5-turbo / gpt-4 and 124 for gpt-4o / 4o-mini.
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def test_cookbook_chat_example():
    assert count_messages(COOKBOOK, "gpt-4") == TokenCount(129, True, "tiktoken:cl100k_base")
    assert count_messages(COOKBOOK, "gpt-3.5-turbo").tokens == 129
    assert count_messages(COOKBOOK, "gpt-4o").tokens == 124
    assert count_messages(COOKBOOK, "gpt-4o-mini").tokens == 124
    # Message objects count the same as dicts
    assert get_counter("gpt-4o").count_messages([Message.from_openai(m) for m in COOKBOOK]) == 124


# Cookbook tool example: the API reported 105 (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o).
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def test_cookbook_tools_example():
    assert count_messages(WEATHER_MESSAGES, "gpt-4", tools=WEATHER_TOOLS).tokens == 105
    assert count_messages(WEATHER_MESSAGES, "gpt-4o", tools=WEATHER_TOOLS).tokens == 101
    # legacy ``functions`` shape gives the same count
    fns = [t["function"] for t in WEATHER_TOOLS]
    assert count_messages(WEATHER_MESSAGES, "gpt-4o", tools=fns).tokens == 101


# Examples published by hmarr/openai-chat-tokens (tests/token-counts.test.ts), each checked
# against the gpt-3.5-turbo API there.
_F0 = {"name": "foo", "parameters": {"type": "object", "properties": {}}}
_DO = {"name": "do_stuff", "parameters": {"type": "object", "properties": {}}}
_DO2 = {"name": "do_other_stuff", "parameters": {"type": "object", "properties": {}}}
_RECIPE = {
    "name": "get_recipe",
    "parameters": {
        "type": "object",
        "required": ["ingredients", "instructions", "time_to_cook"],
        "properties": {
            "ingredients": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "unit", "amount"],
                    "properties": {
                        "name": {"type": "string"},
                        "unit": {
                            "enum": ["grams", "ml", "cups", "pieces", "teaspoons"],
                            "type": "string",
                        },
                        "amount": {"type": "number"},
                    },
                },
            },
            "instructions": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Steps to prepare the recipe (no numbering)",
            },
            "time_to_cook": {
                "type": "number",
                "description": "Total time to prepare the recipe in minutes",
            },
        },
    },
}
_ANYOF = {
    "name": "foo",
    "description": "Return the foo or the bar",
    "parameters": {
        "type": "object",
        "properties": {
            "res": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string", "const": "post"},
                            "text": {"type": "string"},
                        },
                        "required": ["kind", "text"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string", "const": "user"},
                            "name": {"type": "string", "enum": ["jane", "suzie", "adam"]},
                        },
                        "required": ["kind", "name"],
                        "additionalProperties": False,
                    },
                ],
                "description": "The foo or the bar",
            }
        },
        "required": ["res"],
        "additionalProperties": False,
    },
}
HMARR = [
    ([{"role": "user", "content": "hello"}], None, None, 8),
    ([{"role": "user", "content": "hello world"}], None, None, 9),
    ([{"role": "system", "content": "hello:"}], None, None, 9),
    (
        [
            {"role": "system", "content": "# Important: you're the best robot"},
            {"role": "user", "content": "hello robot"},
            {"role": "assistant", "content": "hello world"},
        ],
        None,
        None,
        27,
    ),
    ([{"role": "user", "content": "hello"}], [_F0], None, 31),
    ([{"role": "user", "content": "hello"}], [_F0], "none", 32),
    ([{"role": "user", "content": "hello"}], [_F0], "auto", 31),
    ([{"role": "user", "content": "hello"}], [_F0], {"name": "foo"}, 36),
    ([{"role": "user", "content": "hello"}], [{**_F0, "description": "Do a foo"}], None, 36),
    (
        [{"role": "user", "content": "hello"}],
        [
            {
                "name": "bing_bong",
                "description": "Do a bing bong",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {"type": "string"},
                        "bar": {"type": "number", "description": "A number"},
                    },
                },
            }
        ],
        None,
        57,
    ),
    (
        [{"role": "user", "content": "hello"}],
        [
            {
                "name": "bing_bong",
                "description": "Do a bing bong",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {
                            "type": "object",
                            "properties": {
                                "bar": {"type": "string", "enum": ["a", "b", "c"]},
                                "baz": {"type": "boolean"},
                            },
                        }
                    },
                },
            }
        ],
        None,
        68,
    ),
    (
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": "{}"},
        ],
        None,
        None,
        15,
    ),
    (
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": '{"foo": "bar", "baz": 1.5}'},
        ],
        None,
        None,
        28,
    ),
    (
        [
            {
                "role": "function",
                "name": "dance_the_tango",
                "content": '{"a": { "b" : { "c": false}}}',
            }
        ],
        None,
        None,
        24,
    ),
    (
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo": "bar", "baz": 1.5}'},
            }
        ],
        None,
        None,
        26,
    ),
    (
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo":"bar", "baz":\n\n 1.5}'},
            }
        ],
        None,
        None,
        25,
    ),
    (
        [
            {"role": "system", "content": "You are an AI assistant trained to foo or bar"},
            {"role": "user", "content": "My name is suzie"},
            {
                "role": "function",
                "name": "foo",
                "content": '{"res":{"kind":"user","name":"suzie"}}',
            },
            {"role": "user", "content": 'I want to post a message with the text "hello world"'},
            {
                "role": "function",
                "name": "foo",
                "content": '{"res":{"kind":"post","text":"hello world"}}',
            },
        ],
        [_ANYOF],
        {"name": "foo"},
        158,
    ),
    (
        [{"role": "system", "content": "Hello"}, {"role": "user", "content": "Hi there"}],
        [_DO],
        None,
        35,
    ),
    (
        [{"role": "system", "content": "Hello:"}, {"role": "user", "content": "Hi there"}],
        [_DO],
        None,
        35,
    ),
    (
        [
            {"role": "system", "content": "Hello:"},
            {"role": "system", "content": "Hello"},
            {"role": "user", "content": "Hi there"},
        ],
        [_DO],
        None,
        40,
    ),
    (
        [
            {"role": "system", "content": "Hello:"},
            {"role": "system", "content": "Hello"},
            {"role": "user", "content": "Hi there"},
        ],
        [_DO, _DO2],
        None,
        49,
    ),
    (
        [
            {"role": "system", "content": "Hello:"},
            {"role": "system", "content": "Hello"},
            {"role": "user", "content": "Hi there"},
        ],
        [_DO, _DO2],
        {"name": "do_stuff"},
        55,
    ),
    ([{"role": "user", "content": "hello"}], [_RECIPE], None, 106),
]


@pytest.mark.parametrize(("messages", "functions", "choice", "expected"), HMARR)
def test_published_function_formula_examples(cl100k, messages, functions, choice, expected):
    assert cl100k.count_messages(messages, functions, tool_choice=choice) == expected


def test_render_functions_typescript_namespace():
    text = render_functions([WEATHER_TOOLS[0]["function"]])
    assert text == (
        "namespace functions {\n\n// Get the current weather in a given location\n"
        "type get_current_weather = (_: {\n// The city and state, e.g. San Francisco, CA\n"
        "location: string,\n// The unit of temperature to return\n"
        'unit?: "celsius" | "fahrenheit",\n}) => any;\n\n} // namespace functions'
    )


def test_tool_calls_and_tool_results(o200k):
    call = ToolCall(id="call_1", name="get_current_weather", arguments='{"location": "Paris"}')
    assistant = Message(role="assistant", content="", tool_calls=(call,))
    as_dict = {"role": "assistant", "content": None, "tool_calls": [call.to_openai()]}
    expected = (
        3
        + o200k.count_text("assistant")
        + 3
        + o200k.count_text(call.name)
        + o200k.count_text(call.arguments)
    )
    assert o200k.count_message(assistant) == expected
    assert o200k.count_message(as_dict) == expected
    tool = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    assert o200k.count_message(tool) == 3 + o200k.count_text("tool") + o200k.count_text(
        '{"temp": 21}'
    )


def test_role_aliases_and_message_objects(o200k):
    assert o200k.count_message({"role": "human", "content": "hi"}) == o200k.count_message(
        {"role": "user", "content": "hi"}
    )
    assert o200k.count_message(Message(role="user", content="hi", name="bob")) == 3 + 1 + 1 + 1 + 1
    assert o200k.count_messages([]) == 0
    with pytest.raises(TypeError, match="Message"):
        o200k.count_message(42)  # type: ignore[arg-type]


def test_text_parts_counted_like_string(o200k):
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]
    assert o200k.count_message({"role": "user", "content": parts}) == 3 + 1 + 1 + 1
    res = count_messages([{"role": "user", "content": parts}], "gpt-4o")
    assert res.exact is True


class _Spy:
    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, text):
        self.calls += 1
        return self.fn(text)


def _conversation(n: int) -> list[dict]:
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message number {i}: " + "lorem ipsum " * (i % 7),
        }
        for i in range(n)
    ]


def test_recount_after_append_encodes_only_the_new_message():
    counter = TiktokenCounter(get_encoding("o200k_base"), model="gpt-4o")
    spy = _Spy(counter._encode)
    counter._encode = spy
    convo = _conversation(200)
    first = counter.count_messages(convo)
    assert spy.calls == 200 + 2  # each message once + the two role names once
    convo.append({"role": "user", "content": "and one more question"})
    spy.calls = 0
    second = counter.count_messages(convo)
    assert spy.calls == 1
    assert second == first + counter.count_message(convo[-1])
    # the cached total equals a fresh count
    fresh = TiktokenCounter(get_encoding("o200k_base"), model="gpt-4o")
    assert fresh.count_messages(convo) == second


def test_cache_is_bounded_and_keyed_by_content():
    counter = TiktokenCounter(get_encoding("o200k_base"), model="gpt-4o", cache_size=64)
    for i in range(500):
        counter.count_message({"role": "user", "content": f"text {i}"})
    assert counter.cache_info["size"] <= 64
    # same content, different dict objects and id -> same key (one encode)
    spy = _Spy(counter._encode)
    counter._encode = spy
    counter.count_message({"role": "user", "content": "same text", "id": "a"})
    counter.count_message(Message(role="user", content="same text", id="b"))
    assert spy.calls == 1
    # the name participates in the key
    counter.count_message({"role": "user", "content": "same text", "name": "x"})
    assert spy.calls == 3  # content + name


def test_truncate_exact(o200k):
    text = "The quick brown fox jumps over the lazy dog. " * 20
    out = o200k.truncate(text, 10)
    assert o200k.count_text(out) == 10
    assert text.startswith(out)
    assert o200k.truncate(text, 10_000) == text
    assert o200k.truncate(text, 0) == ""
    cjk = "お誕生日おめでとう" * 5
    out = o200k.truncate(cjk, 3)
    assert cjk.startswith(out) and o200k.count_text(out) <= 3 and "\ufffd" not in out
    assert o200k.decode(o200k.encode("hello world")) == "hello world"


def test_estimator_counter_truncate_never_exceeds_its_count():
    est = get_counter("claude-3-5-sonnet")
    text = "Some prose with words, numbers 12345 and code: def f(x): return x\n" * 30
    for limit in (1, 7, 50, 200):
        out = est.truncate(text, limit)
        assert est.count_text(out) <= limit
        assert text.startswith(out)
    assert est.encode("x") is None and est.decode([1]) is None


def test_tools_json_objects_accepted(o200k):
    class Tool:
        def model_dump(self):
            return json.loads(json.dumps(WEATHER_TOOLS[0]))

    assert o200k.count_messages(WEATHER_MESSAGES, [Tool()]) == 101


def test_prefix_memo_sees_replaced_content():
    counter = TiktokenCounter(get_encoding("o200k_base"), model="gpt-4o")
    convo = _conversation(50)
    before = counter.count_messages(convo)
    old = counter.count_message(convo[10])
    convo[10]["content"] = convo[10]["content"] + " with more words appended here"
    after = counter.count_messages(convo)
    assert after == before - old + counter.count_message(convo[10])
    # a different list with new dict objects but equal content -> same total, from the cache
    spy = _Spy(counter._encode)
    counter._encode = spy
    assert counter.count_messages([dict(m) for m in convo]) == after
    assert spy.calls == 0
    # shorter conversation (trimmed) reuses the memo prefix correctly
    assert (
        counter.count_messages(convo[:20]) == sum(counter.count_message(m) for m in convo[:20]) + 3
    )


def test_catalog_tokenizer_field_is_used():
    class Info:
        name = "acme-gpt"
        provider = "openai"
        tokenizer = "cl100k_base"

    class FakeCatalog:
        def find(self, name):
            return Info() if name == "acme-gpt-v2" else None

    c = get_counter("acme-gpt-v2", catalog=FakeCatalog())
    assert c.name == "tiktoken:cl100k_base" and c.model == "acme-gpt"
    # not in this catalog: name rules
    assert get_counter("gpt-4o", catalog=FakeCatalog()).name == "tiktoken:o200k_base"

    class Broken:
        def find(self, name):
            raise RuntimeError("catalog file corrupted")

    assert get_counter("gpt-4", catalog=Broken()).name == "tiktoken:cl100k_base"


def test_concurrent_counting_with_evictions_is_consistent():
    import threading

    enc = get_encoding("o200k_base")
    convos = [_conversation(120 + 7 * k) for k in range(6)]
    for k, convo in enumerate(convos):
        for m in convo:
            m["content"] = f"[{k}] " + m["content"]
    expected = [TiktokenCounter(enc).count_messages(c) for c in convos]
    shared = TiktokenCounter(enc, cache_size=64)  # far smaller than the working set
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(20):
            got = shared.count_messages(convos[k])
            if got != expected[k]:
                errors.append(f"{k}: {got} != {expected[k]}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert shared.cache_info["size"] <= 64


def test_langchain_style_type_key_and_iterables(o200k):
    a = o200k.count_messages([{"type": "human", "content": "hi there"}])
    b = o200k.count_messages([{"role": "user", "content": "hi there"}])
    assert a == b
    assert o200k.count_messages(iter([{"role": "user", "content": "hi there"}])) == b
    assert o200k.count_messages([{"type": "ai", "content": "hello"}]) == o200k.count_messages(
        [{"role": "assistant", "content": "hello"}]
    )


def test_memo_shared_prefix_conversations_stay_correct():
    enc = get_encoding("o200k_base")
    shared = TiktokenCounter(enc)
    head = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    a = head + [{"role": "assistant", "content": "Hello! How can I help?"}]
    b = head + [
        {"role": "assistant", "content": "Hi.", "name": "bot"},
        {"role": "user", "content": "ok"},
    ]
    for _ in range(3):  # alternate: both map to the same memo key
        assert shared.count_messages(a) == TiktokenCounter(enc).count_messages(a)
        assert shared.count_messages(b) == TiktokenCounter(enc).count_messages(b)
    # same content, one field changed on a rebuilt dict -> recounted
    c = [dict(m) for m in a]
    c[2]["name"] = "helper"
    assert shared.count_messages(c) == shared.count_messages(a) + shared.count_text("helper") + 1
