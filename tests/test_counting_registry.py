"""The tokenizer registry: HF tokenizers (trained here, offline), tokenizer.json paths,
callables, mistral-common (exact chat template), and catalog tokenizer names."""

from __future__ import annotations

import pytest

from tokenward.counting import (
    EstimatorCounter,
    MistralCounter,
    TextTokenizerCounter,
    TiktokenCounter,
    count_messages,
    count_text,
    get_counter,
    register_tokenizer,
    registered_tokenizers,
    tokenizer_names,
    unregister_tokenizer,
)
from tokenward.errors import ConfigurationError, TokenizerUnavailableError

CORPUS = [
    "the ledger records every model call and the budget stops runaway spend",
    "count tokens exactly with the tokenizer the model was trained with",
    "trim the history and pack the retrieved chunks into the context window",
] * 50


@pytest.fixture
def hf_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    for pattern in registered_tokenizers():
        unregister_tokenizer(pattern)


def test_hf_tokenizer_counts_text_exactly(hf_tokenizer):
    register_tokenizer("acme-llm-*", hf_tokenizer)
    text = "the budget stops the ledger; unseen words split: zygomorphic"
    want = len(hf_tokenizer.encode(text, add_special_tokens=False).ids)
    res = count_text(text, "acme-llm-7b")
    assert res.tokens == want and res.exact is True and res.method == "tokenizers"
    counter = get_counter("acme-llm-7b")
    assert isinstance(counter, TextTokenizerCounter)
    assert counter.decode(counter.encode(text)) == text
    assert len(counter.encode(counter.truncate(text, 5))) <= 5
    # messages: content exact, chat template unknown -> flagged
    msgs = [{"role": "user", "content": text}]
    got = count_messages(msgs, "acme-llm-7b")
    assert got.tokens == 3 + counter.count_text("user") + want + 3 and got.exact is False
    assert get_counter("other-model") is not counter


def test_tokenizer_json_path(hf_tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    hf_tokenizer.save(str(path))
    register_tokenizer("local/my-model*", path)
    text = "pack the retrieved chunks"
    assert count_text(text, "local/my-model-v2").tokens == len(
        hf_tokenizer.encode(text, add_special_tokens=False).ids
    )
    with pytest.raises(ConfigurationError, match="tokenizer"):
        register_tokenizer("broken-*", tmp_path / "missing.json")


def test_callables_returning_ids_or_counts():
    register_tokenizer("chars-*", lambda s: list(s.encode()))
    register_tokenizer("words-*", lambda s: len(s.split()))
    assert count_text("héllo", "chars-1").tokens == 6
    assert count_text("one two three", "words-1").tokens == 3
    register_tokenizer("bad-*", lambda s: "three")
    with pytest.raises(ConfigurationError, match="int or a list"):
        count_text("x", "bad-1")


def test_newest_registration_wins_and_unregister_restores():
    assert get_counter("gpt-4o").name == "tiktoken:o200k_base"
    register_tokenizer("gpt-4o*", lambda s: len(s))
    register_tokenizer("GPT-4O-MINI*", lambda s: 1)
    assert count_text("abcdef", "gpt-4o").tokens == 6
    assert count_text("abcdef", "openai/gpt-4o-mini").tokens == 1  # prefix stripped, any case
    assert unregister_tokenizer("gpt-4o*") and unregister_tokenizer("gpt-4o-mini*")
    assert get_counter("gpt-4o").name == "tiktoken:o200k_base"
    assert not unregister_tokenizer("gpt-4o*")


def test_registry_reaches_trimming_packing_and_the_accountant(hf_tokenizer):
    from tokenward import Accountant
    from tokenward.catalog import Catalog
    from tokenward.context import pack_context, trim_history

    register_tokenizer("acme-llm-*", hf_tokenizer)
    counter = get_counter("acme-llm-7b")
    msgs = [{"role": "user" if i % 2 else "assistant", "content": CORPUS[i % 3]} for i in range(20)]
    kept = trim_history(msgs, 100, "acme-llm-7b")
    assert sum(counter.count_message(m) for m in kept) <= 100 < counter.count_messages(msgs)
    packed = pack_context([(t, 1.0) for t in CORPUS[:3]], 20, "acme-llm-7b")
    assert counter.count_text(packed.text) <= 20
    catalog = Catalog.default()
    catalog.override("acme-llm-7b", input=1, output=2, context_window=8192, provider="acme")
    acct = Accountant(catalog=catalog)
    est = acct.preflight("run-1", "acme-llm-7b", messages=msgs, max_output_tokens=10)
    assert est.prompt_tokens == counter.count_messages(msgs)
    acct.release("run-1")


# -- Mistral ----------------------------------------------------------------------------------

MISTRAL_MESSAGES = [
    {"role": "system", "content": "You are a weather assistant. Answer briefly."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "a1B2c3D4e",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Paris", "unit": "celsius"}',
                },
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "a1B2c3D4e",
        "name": "get_weather",
        "content": '{"temp": 21, "sky": "clear"}',
    },
    {"role": "assistant", "content": "21 °C and clear."},
    {"role": "user", "content": "And in Rome, tomorrow?"},
]
MISTRAL_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]


def _mistral_common_count(tokenizer, messages, tools):
    """mistral-common's own tokenization of the request, built with its own classes."""
    from mistral_common.protocol.instruct.messages import (
        AssistantMessage,
        SystemMessage,
        ToolMessage,
        UserMessage,
    )
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall

    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(SystemMessage(content=m["content"]))
        elif m["role"] == "user":
            out.append(UserMessage(content=m["content"]))
        elif m["role"] == "tool":
            out.append(
                ToolMessage(content=m["content"], tool_call_id=m["tool_call_id"], name=m["name"])
            )
        else:
            calls = [
                ToolCall(
                    id=c["id"],
                    function=FunctionCall(
                        name=c["function"]["name"], arguments=c["function"]["arguments"]
                    ),
                )
                for c in m.get("tool_calls") or ()
            ]
            out.append(AssistantMessage(content=m["content"], tool_calls=calls or None))
    fns = [Tool(function=Function(**t["function"])) for t in tools or ()]
    request = ChatCompletionRequest(messages=out, tools=fns or None)
    return len(tokenizer.encode_chat_completion(request).tokens)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("open-mistral-nemo-2407", "v3t"),
        ("mistral-large-2411", "v7"),
        ("mistral/codestral-2405", "v3"),
        ("mistral-small-2402", "v2"),
    ],
)
def test_mistral_counts_equal_mistral_common(model, kind):
    from tokenward.counting._mistral import _load

    counter = get_counter(model)
    assert isinstance(counter, MistralCounter) and counter.exact
    for tools in (None, MISTRAL_TOOLS):
        msgs = MISTRAL_MESSAGES if tools or kind in ("v3t", "v7") else MISTRAL_MESSAGES[:2]
        want = _mistral_common_count(_load(kind), msgs, tools)
        res = count_messages(msgs, model, tools=tools)
        assert res.tokens == want and res.exact is True, (model, tools)
    assert count_text("Bonjour à tous", model).exact is True


def test_newer_mistral_models_use_tekken_flagged_approximate():
    counter = get_counter("mistral-medium-3.5")
    assert isinstance(counter, MistralCounter) and counter.exact is False
    assert count_messages(MISTRAL_MESSAGES[:2], "mistral-medium-3.5").exact is False


def test_registered_tekken_file_and_tokenizer(tmp_path):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from tokenward.counting._mistral import _load

    path = _load("v3t").instruct_tokenizer.tokenizer.file_path
    register_tokenizer("my-nemo-finetune*", str(path))
    res = count_messages(MISTRAL_MESSAGES, "my-nemo-finetune-v1", tools=MISTRAL_TOOLS)
    assert res.exact and res.tokens == _mistral_common_count(
        _load("v3t"), MISTRAL_MESSAGES, MISTRAL_TOOLS
    )
    register_tokenizer("other-finetune*", MistralTokenizer.from_file(str(path)))
    other = count_messages(MISTRAL_MESSAGES, "other-finetune", tools=MISTRAL_TOOLS)
    assert other.exact and other.tokens == res.tokens


def test_mistral_per_message_counts_add_up_closely():
    counter = get_counter("open-mistral-nemo-2407")
    total = counter.count_messages(MISTRAL_MESSAGES)
    parts = sum(counter.count_message(m) for m in MISTRAL_MESSAGES) + 1  # <s>
    assert abs(parts - total) <= 0.1 * total


# -- catalog tokenizer names ------------------------------------------------------------------


class _Catalog:
    def __init__(self, tokenizer, provider="openai"):
        self.tokenizer, self.provider = tokenizer, provider

    def find(self, name):
        return type(
            "Info", (), {"name": name, "provider": self.provider, "tokenizer": self.tokenizer}
        )()


@pytest.mark.parametrize("name", [*sorted(tokenizer_names()), None, "no-such-tokenizer"])
def test_every_catalog_tokenizer_name_resolves(name):
    counter = get_counter("some-model", catalog=_Catalog(name))
    res = count_messages(
        [{"role": "user", "content": "hello"}], "some-model", catalog=_Catalog(name)
    )
    assert res.tokens > 0
    if name in ("o200k_base", "o200k_harmony", "cl100k_base"):
        assert isinstance(counter, TiktokenCounter) and res.exact
    elif name in ("mistral", "mistral-common", "tekken"):
        assert isinstance(counter, (MistralCounter, EstimatorCounter))
    else:  # legacy encodings without a local file, unknown names, None: flagged estimate
        assert isinstance(counter, EstimatorCounter) and res.exact is False
        with pytest.raises(TokenizerUnavailableError):
            get_counter("some-model", catalog=_Catalog(name), require_exact=True)


def test_real_catalog_models_all_resolve():
    from tokenward.catalog import default_catalog

    for info in default_catalog().models():
        counter = get_counter(info.name)
        if info.tokenizer in ("o200k_base", "cl100k_base"):
            assert counter.exact, info.name
        assert counter.count_text("hello world") > 0


def test_langchain_trimmer_accepts_a_registered_model_name():
    from langchain_core.messages import AIMessage, HumanMessage

    from tokenward.integrations.langchain._messages import trim_messages_compat

    register_tokenizer("in-house-llm*", lambda s: len(s.split()))
    msgs = [HumanMessage("one two three"), AIMessage("four five"), HumanMessage("six seven eight")]
    kept = trim_messages_compat(
        msgs, max_tokens=12, token_counter="in-house-llm-v1", strategy="last"
    )
    assert kept and kept[-1].content == "six seven eight"
