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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from operator import attrgetter
from typing import Any, Protocol, runtime_checkable

from tokenward.counting._functions import normalize_tools, render_functions
from tokenward.counting._images import document_tokens, image_part_info, image_tokens
from tokenward.messages import Message

__all__ = ["EstimatorCounter", "TiktokenCounter", "TokenCount", "TokenCounter"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
FUNCTIONS_OVERHEAD = 9
SYSTEM_WITH_FUNCTIONS = -4
FUNCTION_ROLE = -2
FUNCTION_CALL = 3

_ROLE_ALIASES = {"human": "user", "ai": "assistant", "chatbot": "assistant", "model": "assistant"}
_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal"})
_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})
_DOC_PARTS = frozenset({"file", "document", "input_file"})


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

    name: str
    exact: bool

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
        out.append(("fc", fc.get("name"), _args(fc.get("arguments"))))
    for c in m.get("tool_calls") or ():
        if type(c) is dict or isinstance(c, Mapping):
            fn = c.get("function")
            fn = fn if (type(fn) is dict or isinstance(fn, Mapping)) else c
            out.append((c.get("id"), fn.get("name"), _args(fn.get("arguments", fn.get("args")))))
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

    def _scale(self, raw: int) -> int:
        return raw

    # -- text ----------------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        """Tokens in ``text`` (no chat overhead)."""
        if not text:
            return 0
        return self._scale(self._len(text))

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
        n = TOKENS_PER_MESSAGE + self._role_len(role)
        approx = False
        if type(content) is str:
            if content:
                n += self._len(content)
        else:
            raw = m.content if isinstance(m, Message) else m.get("content")
            add, approx = self._parts(raw)
            n += add
        if name:
            n += self._len(name) + TOKENS_PER_NAME
        if role == "function":
            n += FUNCTION_ROLE
        calls = _tool_calls_of(m)
        for fname, args in calls:
            n += (
                FUNCTION_CALL
                + (self._len(fname) if fname else 0)
                + (self._len(args) if args else 0)
            )
        return n, approx

    def _parts(self, parts: Any) -> tuple[int, bool]:
        if isinstance(parts, str):
            return self._len(parts), False
        n = 0
        approx = False
        for part in parts or ():
            if isinstance(part, str):
                n += self._len(part)
                continue
            if not isinstance(part, Mapping):
                approx = True
                continue
            ptype = part.get("type")
            if ptype in _TEXT_PARTS or (ptype is None and "text" in part):
                text = part.get("text") or part.get("refusal") or ""
                if text:
                    n += self._len(str(text))
            elif ptype in _IMAGE_PARTS:
                w, h, detail = image_part_info(part)
                if w is None or h is None:
                    approx = True
                n += image_tokens(self.provider, w, h, detail, model=self.model)
            elif ptype in _DOC_PARTS:
                meta = part.get("metadata")
                pages = part.get("pages") or part.get("page_count")
                if not pages and isinstance(meta, Mapping):
                    pages = meta.get("pages")
                approx = True  # per-page figures are published ranges, never exact
                n += document_tokens(self.provider, int(pages) if pages else 1)
                text = part.get("text")
                if text:
                    n += self._len(str(text))
            else:  # input_audio, video...: no size-independent formula
                approx = True
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
        return self._scale(self._lookup(message)[0])

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
    ) -> tuple[int, bool]:
        msgs = messages if type(messages) is list else list(messages)
        vals, approxs, first_system, seen_system = self._values(msgs)
        total = sum(vals)
        approx = any(approxs)
        count = len(msgs)
        fns = normalize_tools(tools) if tools else []
        if not count and not fns:
            return 0, approx
        total += REPLY_PRIMING
        if fns:
            total += self._len(render_functions(fns)) + FUNCTIONS_OVERHEAD
            if seen_system:
                total += SYSTEM_WITH_FUNCTIONS
                if first_system is not None:
                    # the first system message gains a trailing newline
                    total += self._len(first_system + "\n") - self._len(first_system)
        if tool_choice is not None and tool_choice not in ("auto", "required"):
            if tool_choice == "none":
                total += 1
            elif isinstance(tool_choice, Mapping):
                fn = tool_choice.get("function") or tool_choice
                fname = fn.get("name") if isinstance(fn, Mapping) else None
                if fname:
                    total += 4 + self._len(str(fname))
        return total, approx

    def count_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> int:
        """Prompt tokens of a chat request: messages + reply priming + tool definitions.

        Equals OpenAI's ``usage.prompt_tokens`` for text conversations on tiktoken models.
        ``tools`` accepts OpenAI ``tools`` or legacy ``functions`` definitions;
        ``tool_choice`` ("none", or a named function) adds its documented overhead.
        """
        return self._scale(self._count(messages, tools, tool_choice)[0])

    def count_messages_detailed(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> TokenCount:
        """Like :meth:`count_messages` but says whether the count is exact."""
        raw, approx = self._count(messages, tools, tool_choice)
        return TokenCount(self._scale(raw), self.exact and not approx, self.name)

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


def _tool_calls_of(m: Any) -> list[tuple[str, str]]:
    if isinstance(m, Message):
        return [(c.name, c.arguments) for c in m.tool_calls]
    out: list[tuple[str, str]] = []
    fc = m.get("function_call")
    if isinstance(fc, Mapping):
        out.append((str(fc.get("name") or ""), _args(fc.get("arguments"))))
    for c in m.get("tool_calls") or ():
        if isinstance(c, Mapping):
            f = c.get("function")
            fn: Mapping[str, Any] = f if isinstance(f, Mapping) else c
            out.append((str(fn.get("name") or ""), _args(fn.get("arguments", fn.get("args")))))
    return out


def _args(a: Any) -> str:
    if a is None:
        return ""
    if isinstance(a, str):
        return a
    return json.dumps(a, separators=(",", ":"), ensure_ascii=False)


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
        k = max_tokens
        while k > 0:
            # decode bytes and drop a trailing partial UTF-8 sequence
            out = bytes(self.encoding.decode_bytes(toks[:k])).decode("utf-8", errors="ignore")
            if len(self._encode(out)) <= max_tokens:
                return out
            k -= 1
        return ""


class EstimatorCounter(_ChatCounter):
    """Estimated counter for models without a local tokenizer (``exact = False``).

    Text is estimated by the content-aware estimator (:mod:`._estimator`); the chat formula
    is the OpenAI one (other providers' overheads are similar and absorbed by calibration).
    Totals are multiplied by the :class:`Calibrator` ratio learned for ``model`` from
    reported usage (:meth:`observe`).
    """

    exact = False

    def __init__(
        self,
        *,
        model: str,
        provider: str = "unknown",
        calibrator: Any = None,
        estimator: Callable[[str], int] | None = None,
        cache_size: int = 16384,
    ) -> None:
        from tokenward.counting._calibrator import default_calibrator
        from tokenward.counting._estimator import estimate_tokens

        super().__init__(model=model, provider=provider, cache_size=cache_size)
        self.name = "estimate"
        self._estimate = estimator or estimate_tokens
        self.calibrator = calibrator if calibrator is not None else default_calibrator()

    def _len(self, text: str) -> int:
        return self._estimate(text)

    def _scale(self, raw: int) -> int:
        r = self.calibrator.ratio(self.model)
        return raw if r == 1.0 else max(0, int(math.floor(raw * r + 0.5)))

    def observe(self, estimate: int, reported: int, *, calibrated: bool = True) -> None:
        """Feed one (our estimate, provider-reported tokens) pair to the calibrator.

        ``estimate`` is what this counter returned (already calibrated, the default) or,
        with ``calibrated=False``, a raw estimate (:meth:`raw_count_messages`). Calibrated
        estimates are converted back to raw ones first, so feeding them back does not make
        the learned ratio oscillate.
        """
        raw = estimate
        if calibrated:
            r = self.calibrator.ratio(self.model)
            raw = int(estimate / r + 0.5) if r != 1.0 else estimate
        self.calibrator.observe(raw, reported, model=self.model)

    def raw_count_messages(
        self, messages: Iterable[Message | Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> int:
        """:meth:`count_messages` without the calibration ratio."""
        return self._count(messages, tools)[0]

    def encode(self, text: str) -> None:
        return None

    def decode(self, tokens: Sequence[int]) -> None:
        return None

    def truncate(self, text: str, max_tokens: int) -> str:
        """Prefix of ``text`` whose estimate is <= ``max_tokens`` (approximate, never over)."""
        if max_tokens <= 0 or not text:
            return ""
        if self.count_text(text) <= max_tokens:
            return text
        lo, hi = 0, len(text)  # invariant: prefix of length lo fits
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.count_text(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        # prefer to cut at a word boundary when one is close
        cut = text.rfind(" ", max(0, lo - 40), lo)
        out = text[:cut] if cut > 0 else text[:lo]
        while out and self.count_text(out) > max_tokens:  # estimator is not monotone
            out = out[: max(0, len(out) - max(1, len(out) // 50))]
        return out
