"""Usage parsing: µs per provider payload, before and after the shape registry.

For each main shape, the payload a call hands the core (a LangChain ``UsageMetadata``, a
provider response dict or SDK object) is parsed by

* **before**: the if-chain parser the registry replaced (``src/tokenward/usage.py`` of the
  revision before it became the ``usage`` package, read from git; skipped when git or
  that revision is unavailable);
* **after**: today's ``Usage.from_langchain`` / ``Usage.from_any``;
* **anchor**: genai-prices' ``extract_usage`` (pydantic's price package, the library that
  could have served instead), given the provider and API flavor it needs; it reads plain
  dicts only, so an SDK object is dumped first, as its users must.

Rounds interleave the three (CPU time of the process, median of the rounds). The last
column counts the Python function calls one parse makes inside the usage module, and how
many of them re-enter a function already called.
"""

from __future__ import annotations

import collections
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LC_USAGE = {
    "input_tokens": 2006,
    "output_tokens": 300,
    "total_tokens": 2306,
    "input_token_details": {"cache_read": 1920, "audio": 0},
    "output_token_details": {"reasoning": 0, "audio": 0},
}
CHAT = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}
RESPONSES = {
    "id": "resp_123",
    "object": "response",
    "model": "gpt-5.4",
    "usage": {
        "input_tokens": 3000,
        "input_tokens_details": {"cached_tokens": 2048},
        "output_tokens": 900,
        "output_tokens_details": {"reasoning_tokens": 640},
        "total_tokens": 3900,
    },
}
ANTHROPIC = {
    "id": "msg_01",
    "type": "message",
    "model": "claude-sonnet-4-6",
    "usage": {
        "input_tokens": 1000,
        "cache_creation_input_tokens": 30000,
        "cache_read_input_tokens": 50000,
        "cache_creation": {"ephemeral_5m_input_tokens": 10000, "ephemeral_1h_input_tokens": 20000},
        "output_tokens": 2000,
    },
}
GEMINI = {
    "candidates": [{"content": {"parts": [{"text": "..."}], "role": "model"}}],
    "usageMetadata": {
        "promptTokenCount": 250000,
        "candidatesTokenCount": 1000,
        "totalTokenCount": 254000,
        "cachedContentTokenCount": 200000,
        "thoughtsTokenCount": 3000,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 250000}],
    },
    "modelVersion": "gemini-3.1-pro-preview",
}
BEDROCK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 20,
        "outputTokens": 150,
        "totalTokens": 5170,
        "cacheReadInputTokens": 3000,
        "cacheWriteInputTokens": 2000,
    },
}
OPENROUTER = {
    "id": "gen-1",
    "model": "openai/gpt-4o",
    "usage": {
        "prompt_tokens": 194,
        "completion_tokens": 2,
        "total_tokens": 196,
        "cost": 0.00095,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def _sdk_chat() -> Any:
    """A ChatCompletion-like pydantic object (how the OpenAI client returns a response)."""
    from pydantic import BaseModel, ConfigDict

    class Details(BaseModel):
        cached_tokens: int | None = None
        audio_tokens: int | None = None
        reasoning_tokens: int | None = None

    class CompletionUsage(BaseModel):
        model_config = ConfigDict(extra="allow")
        prompt_tokens: int
        completion_tokens: int
        total_tokens: int
        prompt_tokens_details: Details | None = None
        completion_tokens_details: Details | None = None

    class ChatCompletion(BaseModel):
        model_config = ConfigDict(extra="allow")
        id: str
        object: str
        model: str
        choices: list[dict[str, Any]]
        usage: CompletionUsage

    return ChatCompletion.model_validate(CHAT)


def _before_module() -> types.ModuleType | None:
    """``tokenward/usage.py`` as it was before the registry, loaded from git."""
    path = "src/tokenward/usage.py"
    try:
        moved = subprocess.run(
            ["git", "rev-list", "-n", "1", "HEAD", "--", path],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        source = subprocess.run(
            ["git", "show", f"{moved}^:{path}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if "class Usage" not in source:
        return None
    module = types.ModuleType("_usage_before")
    module.__file__ = "<usage before>"
    sys.modules[module.__name__] = module  # dataclasses look the module up by name
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def _calls(parse: Callable[[], Any], in_files: Callable[[str], bool]) -> tuple[int, int]:
    """(Python calls into the usage module, of which re-entering a function already called)."""
    seen: collections.Counter[tuple[str, int]] = collections.Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and in_files(frame.f_code.co_filename):
            seen[(frame.f_code.co_filename, frame.f_code.co_firstlineno)] += 1

    sys.setprofile(profile)
    try:
        parse()
    finally:
        sys.setprofile(None)
    total = sum(seen.values())
    return total, total - len(seen)


def _medians(fns: list[Callable[[], Any] | None], n: int, rounds: int) -> list[float | None]:
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            if fn is None:
                continue
            start = time.process_time_ns()
            for _ in range(n):
                fn()
            samples[i].append((time.process_time_ns() - start) / n / 1000.0)
    return [statistics.median(s) if s else None for s in samples]


def run(quick: bool = False) -> str:
    import tokenward.usage as usage_pkg
    from tokenward.usage import Usage

    n = 500 if quick else 5_000
    rounds = 5 if quick else 15
    before = _before_module()
    try:
        from genai_prices import extract_usage

        anchor_version = __import__("importlib.metadata").metadata.version("genai-prices")
    except ImportError:  # not installed: the anchor column is empty
        extract_usage = None
        anchor_version = "not installed"
    sdk = _sdk_chat()

    def anchor(payload: Any, provider: str, flavor: str = "default") -> Callable[[], Any] | None:
        if extract_usage is None:
            return None
        if hasattr(payload, "model_dump"):
            return lambda: extract_usage(
                payload.model_dump(), provider_id=provider, api_flavor=flavor
            )
        return lambda: extract_usage(payload, provider_id=provider, api_flavor=flavor)

    cases: list[tuple[str, str, Any, Callable[[], Any] | None]] = [
        ("LangChain `UsageMetadata` (cache reads)", "from_langchain", LC_USAGE, None),
        (
            "OpenAI Chat Completions response (dict)",
            "from_any",
            CHAT,
            anchor(CHAT, "openai", "chat"),
        ),
        (
            "OpenAI Chat Completions response (SDK object)",
            "from_any",
            sdk,
            anchor(sdk, "openai", "chat"),
        ),
        (
            "OpenAI Responses API response",
            "from_any",
            RESPONSES,
            anchor(RESPONSES, "openai", "responses"),
        ),
        (
            "Anthropic Messages response (cache TTLs)",
            "from_any",
            ANTHROPIC,
            anchor(ANTHROPIC, "anthropic"),
        ),
        ("Gemini response (thoughts, modalities)", "from_any", GEMINI, anchor(GEMINI, "google")),
        ("Bedrock Converse response (cache)", "from_any", BEDROCK, anchor(BEDROCK, "aws")),
        (
            "OpenRouter response (cost)",
            "from_any",
            OPENROUTER,
            anchor(OPENROUTER, "openrouter", "chat"),
        ),
    ]
    package_dir = str(Path(usage_pkg.__file__).parent)
    rows = []
    for label, method, payload, anchor_fn in cases:
        after_fn = getattr(Usage, method)
        before_fn = getattr(before.Usage, method) if before is not None else None
        assert after_fn(payload) is not None  # parses, and warms the registry's views
        fns: list[Callable[[], Any] | None] = [
            (lambda f=before_fn, p=payload: f(p)) if before_fn is not None else None,
            lambda f=after_fn, p=payload: f(p),
            anchor_fn,
        ]
        t_before, t_after, t_anchor = _medians(fns, n, rounds)
        calls_after = _calls(fns[1], lambda f: f.startswith(package_dir))  # type: ignore[arg-type]
        calls_before = (
            _calls(fns[0], lambda f: f == "<usage before>") if fns[0] is not None else None
        )
        rows.append((label, method, t_before, t_after, t_anchor, calls_before, calls_after))

    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    out = [
        "### Usage parsing (shape registry vs the if-chain it replaced)",
        "",
        f"{n:,} parses per sample, median of {rounds} interleaved rounds (CPU time). "
        f"Anchor: genai-prices {anchor_version} `extract_usage` (told the provider and API "
        "flavor; SDK objects dumped first, as it reads dicts only).",
        "",
        "| payload | parser | before µs | after µs | after / before | anchor µs | "
        "calls before → after (re-entering) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for label, method, tb, ta, tx, cb, ca in rows:
        ratio = "-" if tb is None or ta is None else f"{ta / tb:.2f}"
        calls = f"{cb[0]} ({cb[1]}) → {ca[0]} ({ca[1]})" if cb is not None else f"{ca[0]} ({ca[1]})"
        out.append(f"| {label} | `{method}` | {us(tb)} | {us(ta)} | {ratio} | {us(tx)} | {calls} |")
    if before is None:
        out += ["", "Before: the pre-registry parser could not be read from git in this checkout."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
