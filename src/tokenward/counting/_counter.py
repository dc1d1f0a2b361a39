"""Token counters: exact (tiktoken) and estimated, with the OpenAI chat formula and a
per-message count cache.

Chat formula (OpenAI cookbook "How to count tokens with tiktoken", which matches the API's
``prompt_tokens`` for gpt-3.5-turbo-0613+, gpt-4, gpt-4o and later):
each message costs 3 tokens + its role + its content (+ name + 1 when ``name`` is set), and
every request adds 3 tokens of reply priming (``<|start|>assistant<|message|>``).

Beyond the cookbook (formulas from reverse engineering, documented in place):

* legacy ``function`` role messages cost 2 fewer tokens; an assistant ``function_call`` /
  each ``tool_calls`` entry costs its name + arguments + 3 (hmarr/openai-chat-tokens);
* ``tool`` result messages are counted like any message (role + content; the
  ``tool_call_id`` is not rendered as text);
* tool/function definitions: see :mod:`tokenward.counting._functions`;
* content parts: text parts are tokenized, images/documents use the provider formulas of
  :mod:`tokenward.counting._images` (formulas; flagged inexact when the size is unknown).

Special-token text in user content (``"<|endoftext|>"``) is counted as plain text, the way
the API treats it; counting never raises on content.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from operator import attrgetter
from typing import Any, Protocol, runtime_checkable

from tokenward.counting._anthropic import to_anthropic_tools, tool_prompt_tokens
from tokenward.counting._classes import CONTENT_CLASSES, content_class
from tokenward.counting._content import TOOL_CALL_OVERHEAD, count_parts, json_text
from tokenward.counting._functions import normalize_tools, render_functions
from tokenward.messages import Message

__all__ = ["EstimatorCounter", "TiktokenCounter", "TokenCount", "TokenCounter"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
FUNCTIONS_OVERHEAD = 9
SYSTEM_WITH_FUNCTIONS = -4
FUNCTION_ROLE = -2
FUNCTION_CALL = TOOL_CALL_OVERHEAD

_ROLE_ALIASES = {"human": "user", "ai": "assistant", "chatbot": "assistant", "model": "assistant"}


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count and how it was obtained.

    ``exact`` is True only when an exact tokenizer counted everything (text and the OpenAI
    chat formula); estimates, unknown image sizes and document pages make it False.
    ``method`` names the tokenizer or estimator (``"tiktoken:o200k_base"``,
    ``"estimate:o200k_base"``...).
    """

    tokens: int
    exact: bool
    method: str

    def __int__(self) -> int:
        return self.tokens


@runtime_checkable
class TokenCounter(Protocol):
    """What every counter offers; :func:`tokenward.counting.get_counter` returns one."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    def count_text(self, text: str) -> int: ...

    def count_message(self, message: Message | Mapping[str, Any]) -> int: ...

    def count_messages(
        self, messages: Iterable[Message | Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> int: ...

    def encode(self, text: str) -> list[int] | None: ...

    def decode(self, tokens: Sequence[int]) -> str | None: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


def _freeze(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _calls_key(m: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Hashable key of a dict message's tool calls / function call (no JSON round trip)."""
    out: list[Any] = []
    fc = m.get("function_call")
    if fc is not None and (type(fc) is dict or isinstance(fc, Mapping)):
        out.append(("fc", fc.get("name"), json_text(fc.get("arguments"))))
    for c in m.get("tool_calls") or ():
        if type(c) is dict or isinstance(c, Mapping):
            fn = c.get("function")
            fn = fn if (type(fn) is dict or isinstance(fn, Mapping)) else c
            out.append(
                (c.get("id"), fn.get("name"), json_text(fn.get("arguments", fn.get("args"))))
            )
        else:
            out.append(_freeze(c))
    return tuple(out) or None


class _ChatCounter:
    """Shared chat formula + bounded per-message (two-generation LRU) cache; subclasses
    provide ``_len``."""

    name: str
    exact: bool

    def __init__(self, *, model: str, provider: str, cache_size: int = 16384) -> None:
        self.model = model
        self.provider = provider
        # Two-generation LRU: hits in ``_cache`` (young) cost one dict lookup; hits in
        # ``_old`` are promoted; when young reaches half the bound it becomes old and the
        # previous old generation (entries unused for a whole generation) is dropped.
        self._cache: dict[tuple[Any, ...], int] = {}
        self._old: dict[tuple[Any, ...], int] = {}
        self._approx: set[tuple[Any, ...]] = set()
        self._cache_size = max(16, int(cache_size))
        self._half = self._cache_size // 2
        self._lock = threading.Lock()
        self._role_tokens: dict[str, int] = {}
        # prefix memos keyed by id(first message); the memo holds that message, so the id
        # cannot be reused by another object while the entry exists
        self._memos: dict[Any, tuple[Any, ...]] = {}
        self._max_memos = 32  # each memo keeps its messages alive: keep this small

    # -- to implement -------------------------------------------------------------------
    def _len(self, text: str) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _message_total(self, value: int) -> int:
        """A cached per-message value as a token count (the estimator packs more in it)."""
        return value

    def _total(self, values: list[int], overhead: int, calibrated: bool = True) -> int:
        """Prompt tokens from the per-message values and the request's fixed terms."""
        return sum(values) + overhead

    # -- text ----------------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        """Tokens in ``text`` (no chat overhead)."""
        if not text:
            return 0
        return self._len(text)

    # -- messages ------------------------------------------------------------------------
    def _role_len(self, role: str) -> int:
        n = self._role_tokens.get(role)
        if n is None:
            n = self._role_tokens[role] = self._len(role)
        return n

    def _key(self, m: Any) -> tuple[Any, ...]:
        if type(m) is not dict and isinstance(m, Message):
            c = m.content
            return (
                m.role,
                c if type(c) is str else ("\x00parts", _freeze(c)),
                m.name,
                m.tool_call_id,
                m.tool_calls or None,
            )
        if type(m) is dict or isinstance(m, Mapping):
            role = m.get("role") or m.get("type") or "user"
            raw = m.get("content")
            c = "" if raw is None else raw
            return (
                _ROLE_ALIASES.get(role, role),
                c if type(c) is str else ("\x00parts", _freeze(c)),
                m.get("name"),
                m.get("tool_call_id"),
                _calls_key(m),
            )
        raise TypeError(
            f"expected a Message or an OpenAI-style message dict, got {type(m).__name__}; "
            f"convert framework messages first (tokenward.messages.Message.from_openai)"
        )

    def _compute(self, m: Any, key: tuple[Any, ...]) -> tuple[int, bool]:
        """Tokens of one message (formula), and whether it is approximate."""
        role, content, name, _tool_call_id, _ = key
        if role == "system" and self.provider == "anthropic":
            n = 0  # Anthropic's system prompt is a request field, not a turn: its text only
        else:
            n = TOKENS_PER_MESSAGE + self._role_len(role)
        approx = False
        block_calls: tuple[str, ...] = ()
        if type(content) is str:
            if content:
                n += self._len(content)
        else:
            raw = m.content if isinstance(m, Message) else m.get("content")
            if isinstance(raw, str):
                n += self._len(raw)
            else:
                parts = count_parts(raw, self._len, self.provider, self.model)
                n += parts.tokens
                approx = parts.approx
                block_calls = parts.call_ids
        if name:
            n += self._len(name) + TOKENS_PER_NAME
        if role == "function":
            n += FUNCTION_ROLE
        for call_id, fname, args in _tool_calls_of(m):
            if call_id and call_id in block_calls:
                continue  # the same call, already counted as a tool_use content block
            n += (
                FUNCTION_CALL
                + (self._len(fname) if fname else 0)
                + (self._len(args) if args else 0)
            )
        return n, approx

    def _lookup(self, m: Any) -> tuple[int, bool]:
        key = self._key(m)
        n = self._cache.get(key)
        if n is None:
            n = self._old.get(key)
            if n is not None:
                self._store(key, n, False)  # promote
        if n is not None:
            return n, (type(key[1]) is not str and key in self._approx)
        n, approx = self._compute(m, key)
        self._store(key, n, approx)
        return n, approx

    def _store(self, key: tuple[Any, ...], n: int, approx: bool) -> None:
        cache = self._cache
        cache[key] = n
        if approx:
            self._approx.add(key)
        if len(cache) >= self._half:
            with self._lock:
                if len(self._cache) >= self._half:  # another thread may have rotated
                    self._old = self._cache
                    self._cache = {}
                    if self._approx:
                        old = self._old
                        self._approx = {k for k in self._approx if k in old}

    def count_message(self, message: Message | Mapping[str, Any]) -> int:
        """Tokens of one message including its per-message overhead (cached by content)."""
        return self._message_total(self._lookup(message)[0])

    def _values(self, msgs: list[Any]) -> tuple[list[int], list[bool], str | None, bool]:
        """Per-message counts (+ approx flags) and the first system message's text.

        Two levels of reuse. A *prefix memo* per conversation (keyed by the contents of its
        first two messages): the longest prefix that compares equal (C-level list
        comparison: identical or equal message dicts, and the same contents) to the last
        call's messages is not even re-keyed. Then the per-message cache keyed by content.
        A dict mutated in place without replacing its ``content`` (e.g. editing nested
        ``tool_calls`` lists) can leave a stale prefix; pass new dicts, as frameworks do.
        """
        vals: list[int] = []
        approxs: list[bool] = []
        k = 0
        first_system: str | None = None
        seen_system = False
        contents = _contents(msgs)
        mkey = _memo_key(msgs, contents)
        memo = self._memos.get(mkey) if mkey is not None else None
        if memo is not None:
            objs, mcontents, mvals, mapprox, msys_idx, msys = memo
            lim = min(len(msgs), len(objs))
            try:
                k = _common_prefix(contents, mcontents, msgs, objs, lim)
            except Exception:  # noqa: BLE001 - exotic values that refuse comparison
                k = 0
            if k:
                vals = mvals[:k]
                approxs = mapprox[:k]
                if 0 <= msys_idx < k:
                    seen_system = True
                    first_system = msys
        sys_idx = -1
        if seen_system and memo is not None:
            sys_idx = memo[4]
        key_of = self._key
        for i in range(k, len(msgs)):
            m = msgs[i]
            # fast path: a dict/Message with string content and nothing else special
            if type(m) is dict:
                c = m.get("content")
                if type(c) is str and "tool_calls" not in m and "function_call" not in m:
                    role = m.get("role") or m.get("type") or "user"
                    key = (
                        _ROLE_ALIASES.get(role, role),
                        c,
                        m.get("name"),
                        m.get("tool_call_id"),
                        None,
                    )
                else:
                    key = key_of(m)
            elif type(m) is Message and type(m.content) is str and not m.tool_calls:
                key = (m.role, m.content, m.name, m.tool_call_id, None)
            else:
                key = key_of(m)
            n = self._cache.get(key)
            if n is None:
                n = self._old.get(key)
                if n is None:
                    n, a = self._compute(m, key)
                    self._store(key, n, a)
                else:
                    a = type(key[1]) is not str and key in self._approx
                    self._store(key, n, False)  # promote to the young generation
            else:
                a = type(key[1]) is not str and key in self._approx
            vals.append(n)
            approxs.append(a)
            if not seen_system and key[0] == "system":
                seen_system = True
                sys_idx = i
                if type(key[1]) is str:
                    first_system = key[1]
        if mkey is not None:
            memos = self._memos
            memos[mkey] = (list(msgs), contents, vals, approxs, sys_idx, first_system)
            if len(memos) > self._max_memos:
                with self._lock:
                    for old in list(islice(iter(memos), len(memos) - self._max_memos)):
                        memos.pop(old, None)
        return vals, approxs, first_system, seen_system

    def _count(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        calibrated: bool = True,
    ) -> tuple[int, bool]:
        msgs = messages if type(messages) is list else list(messages)
        vals, approxs, first_system, seen_system = self._values(msgs)
        approx = any(approxs)
        if not msgs and not tools:
            return 0, approx
        overhead = REPLY_PRIMING
        if tools:
            overhead += self._tools_term(tools, tool_choice, seen_system, first_system)
        return self._total(vals, overhead, calibrated), approx

    def _tools_term(
        self, tools: Sequence[Any], tool_choice: Any, seen_system: bool, first_system: str | None
    ) -> int:
        """Tokens the tool definitions (and ``tool_choice``) add to a request.

        OpenAI (and providers without a published rule): the ``namespace functions`` rendering
        of :mod:`._functions`. Anthropic: the tool-use system prompt of the model
        (:func:`._anthropic.tool_prompt_tokens`) plus the definitions as JSON.
        """
        if self.provider == "anthropic":
            defs = to_anthropic_tools(tools)
            if not defs:
                return 0
            return tool_prompt_tokens(self.model, tool_choice) + sum(
                self._len(json_text(d)) for d in defs
            )
        fns = normalize_tools(tools)
        if not fns:
            return 0
        n = self._len(render_functions(fns)) + FUNCTIONS_OVERHEAD
        if seen_system:
            n += SYSTEM_WITH_FUNCTIONS
            if first_system is not None:
                # the first system message gains a trailing newline
                n += self._len(first_system + "\n") - self._len(first_system)
        if tool_choice is not None and tool_choice not in ("auto", "required"):
            if tool_choice == "none":
                n += 1
            elif isinstance(tool_choice, Mapping):
                fn = tool_choice.get("function") or tool_choice
                fname = fn.get("name") if isinstance(fn, Mapping) else None
                if fname:
                    n += 4 + self._len(str(fname))
        return n

    def count_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> int:
        """Prompt tokens of a chat request: messages + reply priming + tool definitions.

        Equals OpenAI's ``usage.prompt_tokens`` for text conversations on tiktoken models.
        ``tools`` accepts OpenAI ``tools`` or legacy ``functions`` definitions (and Anthropic
        tool definitions); ``tool_choice`` ("none", or a named function) adds its overhead.
        """
        return self._count(messages, tools, tool_choice)[0]

    def count_messages_detailed(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> TokenCount:
        """Like :meth:`count_messages` but says whether the count is exact."""
        total, approx = self._count(messages, tools, tool_choice)
        return TokenCount(total, self.exact and not approx, self.name)

    def clear_cache(self) -> None:
        """Forget cached per-message counts."""
        with self._lock:
            self._cache = {}
            self._old = {}
            self._approx = set()
            self._memos.clear()

    @property
    def cache_info(self) -> dict[str, int]:
        """``{"size": entries, "maxsize": bound}`` of the per-message cache."""
        return {"size": len(self._cache) + len(self._old), "maxsize": self._cache_size}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} model={self.model!r} exact={self.exact}>"


def _contents(msgs: list[Any]) -> list[Any]:
    """The ``content`` of every message (C-level map for all-dict / all-Message lists)."""
    if msgs:
        t = type(msgs[0])
        try:
            if t is dict:
                return list(map(dict.get, msgs, repeat("content")))
            if t is Message:
                return list(map(_get_content, msgs))
        except (TypeError, AttributeError):  # mixed list: fall through
            pass
    return [m.get("content") if type(m) is dict else getattr(m, "content", None) for m in msgs]


_get_content = attrgetter("content")


def _common_prefix(c1: list[Any], c2: list[Any], m1: list[Any], m2: list[Any], lim: int) -> int:
    """Length of the longest common prefix of two message lists (and their contents),
    using C-level list comparisons: the whole prefix, then all but the last message (a
    replaced last turn), then a binary search."""

    def same(n: int) -> bool:
        return c1[:n] == c2[:n] and m1[:n] == m2[:n]

    if same(lim):
        return lim
    if lim and same(lim - 1):
        return lim - 1
    lo, hi = 0, max(0, lim - 1)  # same(lo) holds, same(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if same(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _memo_key(msgs: list[Any], contents: list[Any]) -> Any:
    """Conversation key: contents of the first two messages (hashable ones only)."""
    if not msgs:
        return None
    head = tuple(contents[:2])
    for c in head:
        if c is not None and type(c) is not str:
            return ("id", id(msgs[0]))  # parts lists are unhashable: identity instead
    return head


def _tool_calls_of(m: Any) -> list[tuple[str, str, str]]:
    """``(id, name, JSON arguments)`` of a message's tool calls / function call."""
    if isinstance(m, Message):
        return [(c.id, c.name, c.arguments) for c in m.tool_calls]
    out: list[tuple[str, str, str]] = []
    fc = m.get("function_call")
    if isinstance(fc, Mapping):
        out.append(("", str(fc.get("name") or ""), json_text(fc.get("arguments"))))
    for c in m.get("tool_calls") or ():
        if isinstance(c, Mapping):
            f = c.get("function")
            fn: Mapping[str, Any] = f if isinstance(f, Mapping) else c
            out.append(
                (
                    str(c.get("id") or ""),
                    str(fn.get("name") or ""),
                    json_text(fn.get("arguments", fn.get("args"))),
                )
            )
    return out


class TiktokenCounter(_ChatCounter):
    """Exact counter backed by a tiktoken encoding (``o200k_base``, ``cl100k_base``)."""

    exact = True

    def __init__(
        self,
        encoding: Any,
        *,
        model: str = "gpt-4o",
        provider: str = "openai",
        cache_size: int = 16384,
    ) -> None:
        super().__init__(model=model, provider=provider, cache_size=cache_size)
        self.encoding = encoding
        self.name = f"tiktoken:{encoding.name}"
        # encode_ordinary: special-token text is plain text, never an error; also the
        # fastest entry point (no special-token scan).
        self._encode: Callable[[str], list[int]] = encoding.encode_ordinary

    def _len(self, text: str) -> int:
        return len(self._encode(text))

    def count_text(self, text: str) -> int:
        """Exact number of tokens in ``text``."""
        return len(self._encode(text)) if text else 0

    def encode(self, text: str) -> list[int]:
        """Token ids (special-token text encoded as ordinary text)."""
        return self._encode(text)

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self.encoding.decode(list(tokens)))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Longest prefix of ``text`` with at most ``max_tokens`` tokens (exact)."""
        if max_tokens <= 0 or not text:
            return ""
        toks = self._encode(text)
        if len(toks) <= max_tokens:
            return text
        return longest_prefix(
            toks,
            max_tokens,
            lambda head: _decode_utf8(self.encoding, head),
            lambda out: len(self._encode(out)) <= max_tokens,
        )


_CLASS_BITS = 4  # per-message estimator values carry their content class in the low bits
_CLASS_MASK = (1 << _CLASS_BITS) - 1
_CLASS_INDEX = {c: i for i, c in enumerate(CONTENT_CLASSES)}
assert len(CONTENT_CLASSES) <= _CLASS_MASK + 1


def _plain_text(m: Any) -> str:
    if isinstance(m, Message):
        return m.text
    content = m.get("content")
    return content if isinstance(content, str) else Message(role="user", content=content or "").text


class EstimatorCounter(_ChatCounter):
    """Estimated counter for models without a local tokenizer (``exact = False``).

    Text is counted with o200k_base (shipped in the wheel: the best stand-in for a tokenizer
    we do not have); the chat formula is the OpenAI one, with the provider's own tool term
    where one is published (Anthropic). Each message's tokens are multiplied by the
    :class:`Calibrator` ratio learned for (provider, model, its content class) from reported
    usage (:meth:`observe`); fixed overheads by the ratio of the request's dominant class.
    """

    exact = False

    def __init__(
        self,
        *,
        model: str,
        provider: str = "unknown",
        calibrator: Any = None,
        cache_size: int = 16384,
    ) -> None:
        from tokenward.counting._calibrator import default_calibrator
        from tokenward.counting._estimator import ESTIMATE_ENCODING
        from tokenward.counting._loader import get_encoding

        super().__init__(model=model, provider=provider, cache_size=cache_size)
        self.name = "estimate"
        self._encode: Callable[[str], list[int]] = get_encoding(ESTIMATE_ENCODING).encode_ordinary
        self.calibrator = calibrator if calibrator is not None else default_calibrator()
        # calibrated totals handed out recently -> their uncalibrated split by class, so a
        # reported usage can teach the right classes (observe() gets only the total back)
        self._splits: OrderedDict[int, dict[str, int]] = OrderedDict()

    def _len(self, text: str) -> int:
        return len(self._encode(text))

    def _ratio(self, content: str) -> float:
        ratio: float = self.calibrator.ratio(
            self.model, provider=self.provider, content_class=content
        )
        return ratio

    def _compute(self, m: Any, key: tuple[Any, ...]) -> tuple[int, bool]:
        n, approx = super()._compute(m, key)
        text = key[1] if type(key[1]) is str else _plain_text(m)
        return n << _CLASS_BITS | _CLASS_INDEX[content_class(text)], approx

    def _message_total(self, value: int) -> int:
        raw = value >> _CLASS_BITS
        return _scaled(raw, self._ratio(CONTENT_CLASSES[value & _CLASS_MASK]))

    def _total(self, values: list[int], overhead: int, calibrated: bool = True) -> int:
        raw = [0] * len(CONTENT_CLASSES)
        for v in values:
            raw[v & _CLASS_MASK] += v >> _CLASS_BITS
        split = {CONTENT_CLASSES[i]: n for i, n in enumerate(raw) if n}
        dominant = max(split, key=split.__getitem__) if split else "prose"
        split[dominant] = split.get(dominant, 0) + overhead
        if not calibrated:
            return sum(split.values())
        total = sum(_scaled(n, self._ratio(c)) for c, n in split.items())
        with self._lock:
            self._splits[total] = split
            self._splits.move_to_end(total)
            if len(self._splits) > 256:
                self._splits.popitem(last=False)
        return total

    def count_text(self, text: str) -> int:
        """Estimated tokens in ``text`` (calibrated for its content class)."""
        if not text:
            return 0
        return _scaled(self._len(text), self._ratio(content_class(text)))

    def observe(self, estimate: int, reported: int, *, calibrated: bool = True) -> None:
        """Feed one (our estimate, provider-reported tokens) pair to the calibrator.

        ``estimate`` is what this counter returned (already calibrated, the default) or,
        with ``calibrated=False``, a raw estimate (:meth:`raw_count_messages`). A calibrated
        estimate this counter handed out recently is traced back to its uncalibrated split by
        content class, so feeding it back does not make the learned ratios oscillate.
        """
        split = self._splits.get(estimate) if calibrated else None
        if split is None:
            r = self._ratio("*") if calibrated else 1.0
            split = {"*": int(estimate / r + 0.5)}
        self.calibrator.observe(split, reported, model=self.model, provider=self.provider)

    def raw_count_messages(
        self, messages: Iterable[Message | Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> int:
        """:meth:`count_messages` without the calibration ratios."""
        return self._count(messages, tools, calibrated=False)[0]

    def encode(self, text: str) -> None:
        return None

    def decode(self, tokens: Sequence[int]) -> None:
        return None

    def truncate(self, text: str, max_tokens: int) -> str:
        """Longest prefix of ``text`` whose estimate is <= ``max_tokens``."""
        if max_tokens <= 0 or not text:
            return ""
        r = self._ratio(content_class(text))
        if _scaled(self._len(text), r) <= max_tokens:
            return text
        # o200k prefix with floor(max_tokens / r) tokens, cut at a character boundary
        toks = self._encode(text)
        enc = self._o200k()
        return longest_prefix(
            toks,
            min(len(toks), int(max_tokens / r)),
            lambda head: _decode_utf8(enc, head),
            lambda out: _scaled(self._len(out), r) <= max_tokens,
        )

    @staticmethod
    def _o200k() -> Any:
        from tokenward.counting._estimator import ESTIMATE_ENCODING
        from tokenward.counting._loader import get_encoding

        return get_encoding(ESTIMATE_ENCODING)


def longest_prefix(
    tokens: Sequence[int],
    k: int,
    decode: Callable[[Sequence[int]], str],
    fits: Callable[[str], bool],
) -> str:
    """The decoded ``tokens[:k]`` with ``k`` counting down until the text ``fits`` (a
    truncation: decoding a token prefix can split a character or re-tokenize longer)."""
    while k > 0:
        out = decode(tokens[:k])
        if fits(out):
            return out
        k -= 1
    return ""


def _decode_utf8(encoding: Any, tokens: Sequence[int]) -> str:
    """tiktoken's decode of ``tokens`` without a trailing partial UTF-8 sequence."""
    return bytes(encoding.decode_bytes(tokens)).decode("utf-8", errors="ignore")


def _scaled(raw: int, ratio: float) -> int:
    return raw if ratio == 1.0 else max(0, math.floor(raw * ratio + 0.5))
