"""Exact counts asked from the provider, opt-in: Anthropic ``messages.count_tokens`` and
Gemini ``models.count_tokens``, through the official SDKs (``anthropic``, ``google-genai``).

Register one for the models it should count::

    from anthropic import Anthropic
    register_tokenizer("claude-*", AnthropicCountTokens(Anthropic()))

Every lookup by model name then uses it: ``count_messages``, trimming and packing by model
name, and the Accountant's pre-flight counts (so hard-budget reservations rest on the
provider's own number). Costs and failure are bounded:

* results are cached per *message prefix* (the model, system prompt, tools and each prefix of
  the conversation), so counting a growing conversation costs one request per new message and
  re-counting a prefix costs none; per-message counts (for trimming) come from consecutive
  cached prefixes;
* each request has a timeout (default 3 s, no retries); after a failure the endpoint is not
  asked again for ``cooldown`` seconds;
* on a failure, or for what the endpoint cannot answer, the count falls back to the
  calibrated estimate and is flagged ``exact=False``.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tokenward.counting._anthropic import to_anthropic_request, to_anthropic_tools
from tokenward.counting._counter import EstimatorCounter, TokenCount
from tokenward.messages import Message

__all__ = ["AnthropicCountTokens", "GeminiCountTokens", "ProviderCounter"]

logger = logging.getLogger("tokenward.counting")

_last_exact: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tokenward_count_exact", default=False
)


def _digest(value: Any) -> bytes:
    return hashlib.sha1(
        json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).digest()


def _as_dict(m: Message | Mapping[str, Any]) -> dict[str, Any]:
    return m.to_openai() if isinstance(m, Message) else dict(m)


class _Endpoint:
    """The shared part of a provider counter: client call, prefix cache, cooldown."""

    def __init__(
        self,
        count: Callable[[str, list[dict[str, Any]], Sequence[Any] | None, Any], tuple[int, bool]],
        *,
        provider: str,
        cache_size: int,
        cooldown: float,
    ) -> None:
        self.count = count
        self.provider = provider
        self.cooldown = cooldown
        self.requests = 0
        self.failures = 0
        self._cache: OrderedDict[bytes, tuple[int, bool]] = OrderedDict()
        self._cache_size = cache_size
        self._deltas: OrderedDict[bytes, int] = OrderedDict()
        self._down_until = 0.0
        self._lock = threading.Lock()

    def cached(self, key: bytes) -> tuple[int, bool] | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def store(self, key: bytes, value: tuple[int, bool]) -> None:
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def learn_delta(self, message_key: bytes, delta: int) -> None:
        with self._lock:
            self._deltas[message_key] = delta
            while len(self._deltas) > self._cache_size:
                self._deltas.popitem(last=False)

    def delta(self, message_key: bytes) -> int | None:
        return self._deltas.get(message_key)

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def sent(self) -> None:
        with self._lock:
            self.requests += 1

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._down_until = time.monotonic() + self.cooldown


class ProviderCounter:
    """Counter for one model backed by a provider's token-counting endpoint (see module doc).

    ``exact`` tells whether the last count made in the current thread / task came from the
    provider (True) or from the fallback estimate (False); ``count_messages_detailed`` says
    the same per result.
    """

    text_exact = False  # count_text is estimated: one request per text would cost too much

    def __init__(self, endpoint: _Endpoint, *, model: str, provider: str) -> None:
        self._endpoint = endpoint
        self.model = model
        self.provider = provider
        self.name = f"{endpoint.provider}:count_tokens"
        self.fallback = EstimatorCounter(model=model, provider=provider)

    @property
    def exact(self) -> bool:
        return _last_exact.get()

    # -- text: estimated --------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        return self.fallback.count_text(text)

    def encode(self, text: str) -> None:
        return None

    def decode(self, tokens: Sequence[int]) -> None:
        return None

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.fallback.truncate(text, max_tokens)

    # -- requests ---------------------------------------------------------------------------
    def _keys(
        self, msgs: list[dict[str, Any]], tools: Sequence[Any] | None, tool_choice: Any
    ) -> tuple[list[bytes], list[bytes]]:
        """Per-message digests and the cache key of every prefix (1..n messages)."""
        head = _digest([self.model, to_anthropic_tools(tools), tool_choice])
        digests = [_digest(m) for m in msgs]
        prefixes: list[bytes] = []
        h = head
        for d in digests:
            h = hashlib.sha1(h + d).digest()
            prefixes.append(h)
        return digests, prefixes

    def count_messages_detailed(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> TokenCount:
        """The provider's count of the request, or the flagged estimate when it fails."""
        msgs = [_as_dict(m) for m in messages]
        if not msgs:
            _last_exact.set(False)
            return TokenCount(0, False, self.name)
        digests, prefixes = self._keys(msgs, tools, tool_choice)
        ep = self._endpoint
        hit = ep.cached(prefixes[-1])
        if hit is None and ep.available():
            try:
                ep.sent()
                hit = ep.count(self.model, msgs, tools, tool_choice)
            except Exception as exc:  # noqa: BLE001 - any SDK/transport error: fall back
                ep.failed()
                logger.warning(
                    "%s token counting failed for %s (%s: %s); using the estimate for %.0f s",
                    ep.provider,
                    self.model,
                    type(exc).__name__,
                    exc,
                    ep.cooldown,
                )
            else:
                ep.store(prefixes[-1], hit)
        if hit is None:
            _last_exact.set(False)
            est = self.fallback.count_messages_detailed(msgs, tools, tool_choice=tool_choice)
            return TokenCount(est.tokens, False, f"{self.fallback.name} (fallback)")
        if len(msgs) > 1:
            before = ep.cached(prefixes[-2])
            if before is not None:
                ep.learn_delta(digests[-1], hit[0] - before[0])
        _last_exact.set(hit[1])
        return TokenCount(hit[0], hit[1], self.name)

    def count_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> int:
        return self.count_messages_detailed(messages, tools, tool_choice=tool_choice).tokens

    def count_message(self, message: Message | Mapping[str, Any]) -> int:
        """One message's tokens: the provider's difference between the prefixes ending before
        and at this message, once a conversation counted through it has taught it; the
        estimate until then (never a request of its own)."""
        delta = self._endpoint.delta(_digest(_as_dict(message)))
        return delta if delta is not None else self.fallback.count_message(message)

    def observe(self, estimate: int, reported: int, *, calibrated: bool = True) -> None:
        """Teach the fallback estimator (the Accountant calls this for estimated counts)."""
        self.fallback.observe(estimate, reported, calibrated=calibrated)

    def __repr__(self) -> str:
        return f"<ProviderCounter {self.name} model={self.model!r}>"


class _ProviderCountTokens:
    """Registrable provider counter: ``register_tokenizer(pattern, this)``."""

    provider = "unknown"

    def __init__(self, *, timeout: float, cache_size: int, cooldown: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.timeout = timeout
        self.endpoint = _Endpoint(
            self._count, provider=self.provider, cache_size=cache_size, cooldown=cooldown
        )
        self._counters: dict[str, ProviderCounter] = {}

    def for_model(self, model: str, provider: str) -> ProviderCounter:
        """The counter for one model name (cached)."""
        counter = self._counters.get(model)
        if counter is None:
            counter = self._counters[model] = ProviderCounter(
                self.endpoint, model=model, provider=provider or self.provider
            )
        return counter

    @property
    def requests(self) -> int:
        """Requests sent to the provider so far (cache hits send none)."""
        return self.endpoint.requests

    def _count(
        self, model: str, msgs: list[dict[str, Any]], tools: Sequence[Any] | None, tool_choice: Any
    ) -> tuple[int, bool]:  # pragma: no cover - abstract
        raise NotImplementedError


class AnthropicCountTokens(_ProviderCountTokens):
    """Exact Claude counts from ``client.messages.count_tokens`` (``anthropic`` SDK, sync
    client). OpenAI-style messages and tools are converted to the Messages API shape;
    Anthropic-native content blocks pass through. ``thinking`` is forwarded when given."""

    provider = "anthropic"

    def __init__(
        self,
        client: Any,
        *,
        timeout: float = 3.0,
        cache_size: int = 4096,
        cooldown: float = 30.0,
        thinking: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(timeout=timeout, cache_size=cache_size, cooldown=cooldown)
        self.client = (
            client.with_options(max_retries=0) if hasattr(client, "with_options") else client
        )
        self.thinking = dict(thinking) if thinking else None

    def _count(
        self, model: str, msgs: list[dict[str, Any]], tools: Sequence[Any] | None, tool_choice: Any
    ) -> tuple[int, bool]:
        kwargs = to_anthropic_request(msgs, tools, tool_choice)
        if self.thinking:
            kwargs["thinking"] = self.thinking
        result = self.client.messages.count_tokens(model=model, timeout=self.timeout, **kwargs)
        return int(result.input_tokens), True


def _gemini_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or ():
        if isinstance(part, str):
            parts.append({"text": part})
        elif isinstance(part, Mapping):
            ptype = part.get("type")
            if ptype in ("text", "input_text", "output_text"):
                parts.append({"text": str(part.get("text") or "")})
            elif ptype in ("image_url", "input_image"):
                iu = part.get("image_url")
                url = iu.get("url") if isinstance(iu, Mapping) else iu
                if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                    mime, data = url[5:].split(";base64,", 1)
                    parts.append({"inline_data": {"mime_type": mime, "data": data}})
                else:
                    parts.append(
                        {"file_data": {"file_uri": str(url or ""), "mime_type": "image/jpeg"}}
                    )
            elif "text" in part:
                parts.append({"text": str(part["text"])})
    return parts


def to_gemini_contents(
    msgs: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(contents, system parts)`` for Gemini from OpenAI-style messages."""
    contents: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for d in msgs:
        m = Message.from_openai(d)
        if m.role in ("system", "developer"):
            system.extend(_gemini_parts(m.content))
        elif m.role == "assistant":
            parts = _gemini_parts(m.content)
            for c in m.tool_calls:
                names[c.id] = c.name
                try:
                    args = json.loads(c.arguments or "{}")
                except ValueError:
                    args = {"arguments": c.arguments}
                parts.append({"function_call": {"name": c.name, "args": args}})
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        elif m.role in ("tool", "function"):
            name = m.name or names.get(m.tool_call_id or "", "tool")
            contents.append(
                {
                    "role": "user",
                    "parts": [
                        {"function_response": {"name": name, "response": {"content": m.text}}}
                    ],
                }
            )
        else:
            contents.append({"role": "user", "parts": _gemini_parts(m.content) or [{"text": ""}]})
    return contents, system


class GeminiCountTokens(_ProviderCountTokens):
    """Exact Gemini counts from ``client.models.count_tokens`` (``google-genai`` SDK).

    On Vertex AI clients the system instruction and tools are sent with the request. The
    Gemini Developer API's countTokens takes neither: there the system prompt is counted as a
    leading user turn and tool declarations as JSON text, and such counts are flagged
    ``exact=False`` (a few tokens of framing differ).
    """

    provider = "gemini"

    def __init__(
        self, client: Any, *, timeout: float = 3.0, cache_size: int = 4096, cooldown: float = 30.0
    ) -> None:
        super().__init__(timeout=timeout, cache_size=cache_size, cooldown=cooldown)
        self.client = client

    def _count(
        self, model: str, msgs: list[dict[str, Any]], tools: Sequence[Any] | None, tool_choice: Any
    ) -> tuple[int, bool]:
        from google.genai import types

        contents, system = to_gemini_contents(msgs)
        declarations = [
            {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t["input_schema"],
            }
            for t in to_anthropic_tools(tools)
            if "input_schema" in t
        ]
        config: dict[str, Any] = {
            "http_options": types.HttpOptions(timeout=int(self.timeout * 1000))
        }
        exact = True
        if getattr(getattr(self.client, "_api_client", None), "vertexai", False):
            if system:
                config["system_instruction"] = {"parts": system}
            if declarations:
                config["tools"] = [{"function_declarations": declarations}]
        else:
            if system:
                contents.insert(0, {"role": "user", "parts": system})
                exact = False
            if declarations:
                contents.insert(0, {"role": "user", "parts": [{"text": json.dumps(declarations)}]})
                exact = False
        result = self.client.models.count_tokens(
            model=model, contents=contents, config=types.CountTokensConfig(**config)
        )
        return int(result.total_tokens or 0), exact
