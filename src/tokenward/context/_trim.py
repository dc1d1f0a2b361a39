"""Trim a chat history to a token budget.

The algorithm works on any message type through a small :class:`MessageOps` table, so
the LangChain adapter trims ``BaseMessage`` lists without converting them (and its
counter sees the original objects), while :func:`trim_history` works on
:class:`tokenward.messages.Message`.

How it decides (same results as ``langchain_core.messages.trim_messages`` for every
option both have, see the differences below):

* ``strategy="last"``: trailing messages that do not match ``end_on`` are removed, the
  system message (index 0) is set aside when ``include_system``, pinned messages are
  set aside, then *groups* are taken from the end while they fit. A group is one
  message, or, with ``keep_tool_pairs``, an assistant message with tool calls plus the
  tool messages that follow it. With a per-message counter the walk stops at the first
  group that does not fit, so only the kept messages and one more are counted, each
  once. With a list counter (not assumed additive) the longest fitting suffix is found
  by binary search over group boundaries, counting whole lists in forward order, like
  LangChain does over messages.
* ``allow_partial``: the first group that did not fit, if it is a single message, is
  cut: content blocks are dropped one at a time from the far side, then the first
  text block is cut with ``text_splitter`` (binary search on the number of pieces).
* ``start_on`` (last) / ``end_on`` (first): whole groups are dropped from the open
  side of the window until its first / last message matches.
* ``strategy="first"``: the same from the start.

Differences from ``trim_messages`` (only where it is wrong or where we add options):

* tool groups are never split (upstream tests for issue #29637 require this; released
  langchain-core 1.7 can return a ToolMessage without the AI message that called it);
* the counter always receives messages in conversation order (1.7 counts reversed lists);
* :func:`trim_history` counts a partial message exactly as it will be sent, so the result
  fits ``max_tokens``. ``trim_messages`` counts it in its working order (for
  ``strategy="last"``: the kept content blocks reversed, the text pieces joined in reverse
  order), which with a counter that sees word or BPE boundaries can keep a cut that is
  over the budget once sent in order; the LangChain adapter (``trim_messages_compat``)
  counts it that way too (``partial_order="langchain"``), for the same results;
* pinned messages, a summarizer, and ``overflow="raise"`` (the default):
  ``ContextBudgetError`` when the system and pinned messages alone exceed the budget
  (``trim_messages`` returns the system message anyway, as ``overflow="keep"`` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from tokenward.context._cache import CacheAwareTrim
from tokenward.context._counters import MessageCounts
from tokenward.errors import ConfigurationError, ContextBudgetError
from tokenward.messages import Message

__all__ = ["MessageOps", "default_text_splitter", "trim_history", "trim_items"]

_ROLE_ALIASES = {
    "human": "user",
    "ai": "assistant",
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "function": "function",
}
_DEFAULT: Any = object()
_MAX_SUMMARY_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class MessageOps:
    """How the trimming algorithm looks at one kind of message object."""

    is_system: Callable[[Any], bool]
    is_tool: Callable[[Any], bool]
    has_tool_calls: Callable[[Any], bool]
    content: Callable[[Any], Any]
    with_content: Callable[[Any, Any], Any]
    make_summary: Callable[[Any], Any]
    # inputs that are not ``kind`` (dicts, tuples...) are converted with ``coerce`` when
    # the trim first looks at them: a long history is never scanned as a whole
    kind: type | tuple[type, ...] = object
    coerce: Callable[[Any], Any] | None = None


def default_text_splitter(text: str) -> list[str]:
    """Split on newlines, keeping each newline at the end of its piece."""
    splits = text.split("\n")
    return [s + "\n" for s in splits[:-1]] + splits[-1:]


def _summary_message(value: Any) -> Message:
    if isinstance(value, Message):
        return value
    if isinstance(value, str):
        return Message(role="user", content=value)
    return Message.from_openai(value)


CORE_OPS = MessageOps(
    is_system=lambda m: m.role in ("system", "developer"),
    is_tool=lambda m: m.role == "tool",
    has_tool_calls=lambda m: m.role == "assistant" and bool(m.tool_calls),
    content=lambda m: m.content,
    with_content=lambda m, c: dataclasses.replace(m, content=c),
    make_summary=_summary_message,
    kind=Message,
    coerce=Message.from_openai,
)


def coerce_first(items: list[Any], ops: MessageOps) -> list[Any]:
    """``items`` with the first converted by ``ops.coerce`` (counters are probed with it),
    a new list only if it was not ``ops.kind``; the trim converts the others it looks at."""
    if items and ops.coerce is not None and not isinstance(items[0], ops.kind):
        return [ops.coerce(items[0]), *items[1:]]
    return items


def _role_predicate(spec: Any) -> Callable[[Message], bool] | None:
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, str | type):
        return cast(Callable[[Message], bool], spec)
    specs = [spec] if isinstance(spec, str | type) else list(spec)
    roles: set[str] = set()
    preds: list[Callable[[Message], bool]] = []
    for s in specs:
        if isinstance(s, str):
            roles.add(_ROLE_ALIASES.get(s, s))
        elif callable(s) and not isinstance(s, type):
            preds.append(s)
        else:
            raise ConfigurationError(
                f"start_on/end_on must be role names ('human', 'ai', 'system', 'tool'...) "
                f"or a predicate; got {s!r}"
            )

    def match(m: Message) -> bool:
        return m.role in roles or any(p(m) for p in preds)

    return match


def _pinned_indices(items: Sequence[Any], pinned: Any) -> set[int]:
    n = len(items)
    if pinned is None:
        return set()
    if callable(pinned):
        return {i for i, m in enumerate(items) if pinned(m)}
    out: set[int] = set()
    for p in pinned:
        if not isinstance(p, int) or isinstance(p, bool):
            raise ConfigurationError(
                f"pinned must hold message indices or be a predicate; got {p!r}"
            )
        if not -n <= p < n:
            raise ConfigurationError(f"pinned index {p} is out of range for {n} messages")
        out.add(p % n)
    return out


def _resolve_splitter(text_splitter: Any) -> Callable[[str], list[str]]:
    if text_splitter is None:
        return default_text_splitter
    split_text = getattr(text_splitter, "split_text", None)
    if callable(split_text):
        return cast(Callable[[str], list[str]], split_text)
    if callable(text_splitter):
        return cast(Callable[[str], list[str]], text_splitter)
    raise ConfigurationError(
        "text_splitter must be a callable str -> list[str] or have .split_text()"
    )


class _Trim:
    """One trim computation over ``items`` (indices into the original list)."""

    def __init__(
        self,
        items: Sequence[Any],
        counts: MessageCounts,
        ops: MessageOps,
        *,
        strategy: str,
        include_system: bool,
        start_on: Any,
        end_on: Any,
        allow_partial: bool,
        splitter: Callable[[str], list[str]],
        keep_pairs: bool,
        pinned: set[int],
        overflow: str,
        max_tokens: int = 0,
        partial_order: str = "sent",
    ) -> None:
        self.items = items  # ``_own`` once a message had to be converted (see item)
        self._own: list[Any] | None = None
        self._coerce = ops.coerce
        self._kind = ops.kind
        self.n = len(items)
        self.c = counts
        self.ops = ops
        self.strategy = strategy
        self.include_system = include_system
        self.start_on = start_on
        self.end_on = end_on
        self.allow_partial = allow_partial
        self.splitter = splitter
        self.keep_pairs = keep_pairs
        self.pinned_raw = pinned
        self.overflow = overflow
        self.max_tokens = max_tokens
        self.partial_order = partial_order
        self._tool: dict[int, bool] = {}
        self._calls: dict[int, bool] = {}

    # -- messages -------------------------------------------------------------------
    def item(self, i: int) -> Any:
        """``items[i]``, converted by ``ops.coerce`` when the trim first looks at it.

        Every index reaches the algorithm through here (``is_tool`` / ``calls`` for the
        group walk, the system and ``end_on`` checks), so the messages read afterwards as
        ``self.items[i]`` are converted; only the few a trim looks at are ever checked.
        """
        m = self.items[i]
        if self._coerce is not None and not isinstance(m, self._kind):
            own = self._own
            if own is None:  # a copy: the caller's list is left as it was
                own = self._own = list(self.items)
                self.items = own
                if self.c is not None:
                    self.c.items = own
            m = own[i] = self._coerce(m)
        return m

    def item_all(self) -> list[Any]:
        """All items, converted (for options that look at every message)."""
        return [self.item(i) for i in range(self.n)]

    # -- groups ---------------------------------------------------------------------
    def is_tool(self, i: int) -> bool:
        v = self._tool.get(i)
        if v is None:
            v = self._tool[i] = bool(self.ops.is_tool(self.item(i)))
        return v

    def calls(self, i: int) -> bool:
        v = self._calls.get(i)
        if v is None:
            v = self._calls[i] = bool(self.ops.has_tool_calls(self.item(i)))
        return v

    def back(self, j: int, lo: int) -> int:
        """Start of the group that ends at ``j`` (groups never reach below ``lo``)."""
        if not self.is_tool(j) or not self.keep_pairs:  # is_tool first: it looks at j
            return j
        k = j
        while k - 1 >= lo and self.is_tool(k - 1):
            k -= 1
        if k - 1 >= lo and self.calls(k - 1):
            return k - 1
        return j

    def fwd(self, i: int, hi: int) -> int:
        """End of the group that starts at ``i``."""
        if not self.calls(i) or not self.keep_pairs:  # calls first: it looks at i
            return i
        e = i
        while e + 1 < hi and self.is_tool(e + 1):
            e += 1
        return e

    def group_of(self, p: int) -> range:
        if not self.keep_pairs:
            return range(p, p + 1)
        if self.is_tool(p):
            k = p
            while k - 1 >= 0 and self.is_tool(k - 1):
                k -= 1
            if k - 1 >= 0 and self.calls(k - 1):
                return range(k - 1, self.fwd(k - 1, self.n) + 1)
            return range(p, p + 1)
        return range(p, self.fwd(p, self.n) + 1)

    # -- main -----------------------------------------------------------------------
    def run(self, reserve: int = 0, floor: int = 0) -> tuple[list[int], dict[int, Any]]:
        """Return kept indices (sorted) and replacement items for cut messages.

        Messages below ``floor`` are not candidates (the system and pinned messages still
        are kept). Afterwards ``self.fixed`` holds the system and pinned indices and
        ``self.overflowed`` says whether a group was dropped for the budget.
        """
        n = self.n
        self.fixed: list[int] = []
        self.overflowed = False
        if n == 0:
            return [], {}
        last = self.strategy == "last"
        lo, hi = 0, n
        if last and self.end_on is not None:
            while hi > 0:
                if self.end_on(self.item(hi - 1)):
                    break
                hi = self.back(hi - 1, 0)
        sys_idx: int | None = None
        if last and self.include_system and hi > 0 and self.ops.is_system(self.item(0)):
            sys_idx, lo = 0, 1
        pinned: set[int] = set()
        for p in self.pinned_raw:
            if p != sys_idx:
                pinned.update(self.group_of(p))
        if sys_idx is not None:
            pinned.discard(sys_idx)
        lo = max(lo, floor)
        if hi == 0 and not pinned:
            return [], {}

        c = self.c
        additive = c.additive
        fixed = self.fixed = sorted(pinned | ({sys_idx} if sys_idx is not None else set()))
        if additive:
            sys_t = c.one(sys_idx) if sys_idx is not None else 0
            pin_t = sum(c.one(p) for p in pinned)
            if c.system_apart:  # trim_messages: [system] and the rest are two lists
                sys_t += c.overhead if sys_idx is not None else 0
                pin_t += c.overhead if pinned else 0
                need = sys_t + pin_t + reserve
            else:
                need = sys_t + pin_t + c.overhead + reserve
        else:
            sys_t = c.of([self.items[sys_idx]]) if sys_idx is not None else 0
            pin_t = c.of([self.items[p] for p in sorted(pinned)]) if pinned else 0
            need = sys_t + pin_t + reserve
        if need > self.max_tokens and self.overflow == "raise":
            raise ContextBudgetError(
                f"the messages that must be kept need {need} tokens (system {sys_t}, "
                f"pinned {pin_t}, overhead/summary {need - sys_t - pin_t}) but "
                f"max_tokens={self.max_tokens}. Raise max_tokens, shorten the system "
                f"prompt, unpin messages, or pass overflow='keep' to keep them anyway "
                f"(LangChain trim_messages behaviour)."
            )
        # window budget: for additive counters, the sum of the kept groups' own counts
        if additive:
            first_overhead = c.overhead if c.system_apart and not pinned else 0
            budget = max(0, self.max_tokens - need - first_overhead)
        else:
            budget = max(0, self.max_tokens - sys_t - reserve)

        def candidates() -> Iterator[tuple[int, int]]:
            if last:
                j = hi - 1
                while j >= lo:
                    s = self.back(j, lo)
                    if not (pinned and any(k in pinned for k in range(s, j + 1))):
                        yield (s, j)
                    j = s - 1
            else:
                i = lo
                while i < hi:
                    e = self.fwd(i, hi)
                    if not (pinned and any(k in pinned for k in range(i, e + 1))):
                        yield (i, e)
                    i = e + 1

        def assemble(
            groups: Iterable[tuple[int, int]], extra: dict[int, Any] | None = None
        ) -> list[Any]:
            idx = set(pinned)
            for s, e in groups:
                idx.update(range(s, e + 1))
            if extra:
                idx.update(extra)
            return [extra[i] if extra and i in extra else self.items[i] for i in sorted(idx)]

        groups = _Lazy(candidates())
        used = 0

        def span(k: int, end: int) -> list[Any]:
            """Messages of candidate groups ``k..end-1``, in conversation order."""
            chosen = groups[k:end]  # walked (their messages converted) before items is read
            if pinned:
                items = self.items
                return [items[i] for s, e in sorted(chosen) for i in range(s, e + 1)]
            if last:  # contiguous: the groups walk back from the end
                return list(self.items[chosen[-1][0] : chosen[0][1] + 1])
            return list(self.items[chosen[0][0] : chosen[-1][1] + 1])

        if additive:  # each message counted once
            if c.batches:  # an additive list counter: one call per batch of groups
                k, used = take_fitting(groups, lambda k, end: c.many(span(k, end)), budget)
            else:

                def cost(k: int, end: int) -> int:
                    return sum(c.one(i) for s, e in groups[k:end] for i in range(s, e + 1))

                k, used = take_fitting(groups, cost, budget, batches=False)
        else:  # a list counter: search the number of groups that fit

            def tokens(k: int) -> int:
                return c.of(assemble(groups[:k]) if pinned else span(0, k))

            k = longest_fitting(groups, tokens, budget, pin_t)
        taken: list[tuple[int, int]] = groups[:k]
        stop = groups[k] if groups.has(k) else None
        self.overflowed = stop is not None

        replaced: dict[int, Any] = {}
        if self.allow_partial and stop is not None and stop[0] == stop[1]:
            part = self._partial(stop[0], taken, used, budget, assemble)
            if part is not None:
                replaced[stop[0]] = part
                taken.append(stop)

        # window in conversation order
        window = sorted(taken)
        # start_on/end_on keep a turn whole: a window that directly continues a pinned
        # message (the user turn an answer replies to, say) does not start a new turn
        if last and self.start_on is not None:
            while window:
                s = window[0][0]
                if s - 1 in pinned or self.start_on(replaced.get(s, self.items[s])):
                    break
                window.pop(0)
        if not last and self.end_on is not None:
            while window:
                e = window[-1][1]
                if e + 1 in pinned or self.end_on(replaced.get(e, self.items[e])):
                    break
                window.pop()
        kept = set(fixed)
        for s, e in window:
            kept.update(range(s, e + 1))
        return sorted(kept), {i: v for i, v in replaced.items() if i in kept}

    def _partial(
        self,
        i: int,
        taken: list[tuple[int, int]],
        used: int,
        budget: int,
        assemble: Callable[..., list[Any]],
    ) -> Any:
        c, ops = self.c, self.ops
        x = self.items[i]
        rev = self.strategy == "last"
        # trim_messages works on the reversed history for "last" and counts a cut message
        # with its content in that working order (blocks reversed, text pieces joined
        # reversed); "sent" counts the content as it will be sent
        counted_rev = rev and self.partial_order == "langchain"
        content = ops.content(x)
        text: str | None = None
        if isinstance(content, list | tuple):
            blocks = list(content)  # in working order: reversed for "last"
            if rev:
                blocks.reverse()
            for _ in range(1, len(blocks)):
                blocks = blocks[:-1]
                sent = blocks[::-1] if rev else list(blocks)
                trial = ops.with_content(x, list(blocks) if counted_rev else sent)
                if c.additive:
                    ok = used + c.single(trial) <= budget
                else:
                    ok = c.of(assemble(taken, {i: trial})) <= budget
                if ok:
                    return ops.with_content(x, sent) if counted_rev else trial
            for block in blocks:
                if isinstance(block, str):
                    text = block
                    break
                if isinstance(block, dict) and block.get("type") == "text":
                    text = block.get("text")
                    break
        elif isinstance(content, str):
            text = content
        if not text:
            return None
        pieces = list(self.splitter(text))  # in working order: reversed for "last"
        if rev:
            pieces.reverse()

        def joined(k: int, counted: bool) -> str:
            chosen = pieces[:k]
            return "".join(chosen[::-1] if rev and not (counted and counted_rev) else chosen)

        # trim_messages counts the kept window and the cut message as two lists
        if c.additive:
            base = used + (c.overhead if c.system_apart else 0)
        else:
            base = c.of(assemble(taken))
        left, right = 0, len(pieces)
        for _ in range(len(pieces).bit_length()):
            if left >= right:
                break
            mid = (left + right + 1) // 2
            if base + c.single(ops.with_content(x, joined(mid, True))) <= budget:
                left = mid
            else:
                right = mid - 1
        if left == 0:
            return None
        return ops.with_content(x, joined(left, False))


class _Lazy:
    """A list filled from an iterator as far as it is read."""

    def __init__(self, source: Iterator[tuple[int, int]]) -> None:
        self.items: list[tuple[int, int]] = []
        self._source: Iterator[tuple[int, int]] | None = source

    def has(self, k: int) -> bool:
        """Is there a ``k``-th item (0-based)?"""
        items, source = self.items, self._source
        while len(items) <= k and source is not None:
            nxt = next(source, None)
            if nxt is None:
                self._source = source = None
            else:
                items.append(nxt)
        return len(items) > k

    def size(self) -> int | None:
        """The number of items if the iterator is exhausted, else None."""
        return len(self.items) if self._source is None else None

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            if k.stop is not None:
                self.has(k.stop - 1)
            return self.items[k]
        self.has(k)
        return self.items[k]


def take_fitting(
    groups: _Lazy, cost: Callable[[int, int], int], budget: int, *, batches: bool = True
) -> tuple[int, int]:
    """``(k, used)``: the most leading ``groups`` whose costs add up to at most ``budget``.

    ``cost(k, end)`` is the total of groups ``k..end-1`` (additive). With ``batches`` the
    groups are counted in batches of three quarters of the number the room left is
    expected to hold (from the tokens per group so far, and at most four times as many
    groups as were counted before, plus four). A batch that does not fit is
    split where its own average says the room ends; a first part that fits is kept and
    the rest, whose cost is then known without counting it, is split the same way. A list
    counter is called a few times and each message is counted about once. Without
    ``batches``, one group at a time: only the kept groups and the first one that does
    not fit are counted.
    """
    k = used = 0
    size = 1
    bad: int | None = None  # groups k..bad-1 are known not to fit ...
    over = 0  # ... and to cost this much together
    while bad != k + 1:
        if bad is not None:  # split the batch that did not fit where the room ends
            guess = (bad - k) * (budget - used) // over if over > 0 else 0
            end = k + min(max(1, guess), bad - k - 1)
        else:
            end = k + size
            if not groups.has(end - 1):
                end = groups.size() or 0
                if end <= k:
                    break
        t = cost(k, end)
        if used + t <= budget:
            used += t
            k = end
            if bad is not None:
                over -= t
            elif batches:
                expected = int((budget - used) * k / used * 3) // 4 if used else 2 * k
                size = max(1, min(expected, 4 * k + 4))  # an average of few groups misleads
        else:
            bad, over = end, t
    return k, used


def longest_fitting(cands: _Lazy, tokens: Callable[[int], int], budget: int, base: int) -> int:
    """Largest ``k`` with ``tokens(k) <= budget`` (``tokens(0) = base`` is not called).

    ``trim_messages`` binary-searches prefix lengths from the whole list down; for any
    counter whose count does not drop when a message is added, the answer is the same
    when the search starts from the short side and interpolates on the counts seen
    (tokens per group so far, then between the bracketing probes), bisecting when the
    bracket does not halve. Probes stay near the answer, so a list counter is called on
    a few lists about as long as the result instead of on the whole history.
    """
    ok, t_ok = 0, base
    bad: int | None = None
    t_bad = 0
    bisect = False
    while True:
        size = cands.size()
        upper = bad if bad is not None else (size + 1 if size is not None else None)
        if upper is not None and upper - ok <= 1:
            return ok
        if ok == 0:
            g = 1
        elif bisect and upper is not None:
            g = (ok + upper) // 2
        elif bad is not None:
            g = ok + int((budget - t_ok) * (bad - ok) / (t_bad - t_ok))
        else:
            per = (t_ok - base) / ok
            g = ok + (int((budget - t_ok) / per) + 1 if per > 0 else ok)
        g = max(g, ok + 1)
        if upper is not None:
            g = min(g, upper - 1)
        if not cands.has(g - 1):
            size = cands.size()
            assert size is not None
            if size <= ok:
                return ok
            g = size
        before = (upper - ok) if upper is not None else None
        t = tokens(g)
        if t <= budget:
            ok, t_ok = g, t
        else:
            bad, t_bad = g, t
        after = bad - ok if bad is not None else None
        bisect = before is not None and after is not None and after * 2 > before


def _hold_or_cut(
    t: _Trim, state: CacheAwareTrim, items: Sequence[Any], max_tokens: int
) -> list[int]:
    """Kept indices with hysteresis: the window keeps starting at the remembered cut while
    it fits ``max_tokens``; otherwise it is trimmed from there to the low-water mark."""
    cut = state.locate(items)
    kept, _ = t.run(floor=cut or 0)
    held = cut is not None and not t.overflowed
    if not held and t.overflowed:  # crossed the high-water mark: cut back to low water
        t.max_tokens = state.low_tokens(max_tokens)
        try:
            kept, _ = t.run(floor=cut or 0)
        finally:
            t.max_tokens = max_tokens
    fixed = set(t.fixed)
    start = next((i for i in kept if i not in fixed), len(items))
    state.remember(
        items, kept, start, held or (cut is None and not t.overflowed), fixed.__contains__
    )
    return kept


def trim_items(
    items: Sequence[Any],
    max_tokens: int,
    counts: MessageCounts,
    ops: MessageOps,
    *,
    strategy: str = "last",
    include_system: bool = False,
    start_on: Any = None,
    end_on: Any = None,
    allow_partial: bool = False,
    text_splitter: Any = None,
    keep_tool_pairs: bool = True,
    pinned: Any = None,
    summarizer: Callable[[list[Any]], Any] | None = None,
    overflow: str = "raise",
    cache_aware: CacheAwareTrim | None = None,
    partial_order: Literal["sent", "langchain"] = "sent",
) -> list[Any]:
    """The algorithm behind :func:`trim_history`, on any message type (see ``MessageOps``).

    ``start_on`` / ``end_on`` / ``pinned`` (when callable) are predicates on ``items``.
    ``cache_aware``: the conversation's :class:`CacheAwareTrim` (adapters keep one per
    conversation and pass it on every turn).
    Items that are not ``ops.kind`` (dicts, tuples...) are converted with ``ops.coerce``
    when the trim first looks at them, so a long history is not scanned as a whole; the
    caller's list is left as it is (pass ``coerce_first(items, ops)`` when building
    ``counts``: counters are probed with the first message).
    ``partial_order``: how the ``allow_partial`` cut is counted: ``"sent"`` (the content
    as it will be sent, so the result fits ``max_tokens``) or ``"langchain"`` (as
    ``trim_messages`` counts it: for ``strategy="last"`` the kept blocks reversed and the
    text pieces joined in reverse order; the LangChain adapter's parity).
    """
    if strategy not in ("first", "last"):
        raise ConfigurationError(
            f"Unrecognized strategy={strategy!r}. Supported strategies are 'last' and 'first'."
        )
    if start_on and strategy == "first":
        raise ConfigurationError("start_on parameter is only valid with strategy='last'")
    if include_system and strategy == "first":
        raise ConfigurationError("include_system parameter is only valid with strategy='last'")
    if overflow not in ("raise", "keep"):
        raise ConfigurationError(f"overflow must be 'raise' or 'keep'; got {overflow!r}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise ConfigurationError(f"max_tokens must be an int >= 0; got {max_tokens!r}")
    t = _Trim(
        items,
        counts,
        ops,
        strategy=strategy,
        include_system=include_system,
        start_on=start_on,
        end_on=end_on,
        allow_partial=allow_partial,
        splitter=_resolve_splitter(text_splitter),
        keep_pairs=keep_tool_pairs,
        pinned=set(),
        overflow=overflow,
        max_tokens=max_tokens,
        partial_order=partial_order,
    )
    if pinned is not None:  # a predicate looks at every message
        t.pinned_raw = _pinned_indices(t.item_all() if callable(pinned) else items, pinned)
    if cache_aware is not None:
        if strategy != "last" or allow_partial or summarizer is not None:
            raise ConfigurationError(
                "cache_aware trimming keeps the oldest kept message fixed across turns: it "
                "needs strategy='last' and no allow_partial or summarizer (a cut or "
                "summarized message would change the cached prefix every turn)"
            )
        everything = t.item_all()  # the state compares the whole history
        return [everything[i] for i in _hold_or_cut(t, cache_aware, everything, max_tokens)]
    kept, replaced = t.run()
    if summarizer is not None:
        reserve = 0
        for _ in range(_MAX_SUMMARY_ROUNDS):
            kept_set = set(kept)
            dropped = [i for i in range(len(items)) if i not in kept_set]
            if not dropped:
                break
            summary = ops.make_summary(summarizer([t.item(i) for i in dropped]))
            cost = counts.single(summary)
            if cost <= reserve:
                at = sum(1 for i in kept if i < dropped[0])
                out = [replaced.get(i, t.items[i]) for i in kept]
                out.insert(at, summary)
                return out
            reserve = cost
            kept, replaced = t.run(reserve)
        else:
            raise ContextBudgetError(
                f"the summary does not fit: the summarizer returned {cost} tokens after "
                f"{_MAX_SUMMARY_ROUNDS} rounds with max_tokens={max_tokens}. Make the "
                f"summarizer shorter or raise max_tokens."
            )
    items = t.items  # with the messages the trim looked at converted
    return [replaced.get(i, items[i]) for i in kept]


def trim_history(
    messages: Sequence[Message | dict[str, Any]],
    max_tokens: int,
    counter: Any = None,
    *,
    strategy: Literal["last", "first"] = "last",
    include_system: bool = _DEFAULT,
    start_on: Any = _DEFAULT,
    end_on: Any = None,
    allow_partial: bool = False,
    text_splitter: Callable[[str], list[str]] | Any = None,
    keep_tool_pairs: bool = True,
    pinned: Iterable[int] | Callable[[Message], bool] | None = None,
    summarizer: Callable[[list[Message]], Message | str] | None = None,
    overflow: Literal["raise", "keep"] = "raise",
    cache_aware: CacheAwareTrim | None = None,
) -> list[Message]:
    """Trim a chat history to at most ``max_tokens`` tokens.

    Args:
        messages: :class:`~tokenward.Message` objects or OpenAI-style dicts.
        max_tokens: the budget for the returned messages (system and pinned included).
        counter: a model name (``"gpt-4o"``), a ``TokenCounter``, a per-message callable
            ``Message -> int`` or a list callable ``list[Message] -> int`` (see
            :func:`tokenward.context.per_message` to mark an ambiguous one).
        strategy: ``"last"`` keeps the newest messages, ``"first"`` the oldest.
        include_system: keep a system message at index 0 (default: True for "last";
            only valid with "last").
        start_on: for "last", drop messages from the start of the kept window until one
            matches: a role (``"human"``/``"user"``, ``"ai"``/``"assistant"``, ``"tool"``,
            ``"system"``), a list of roles, or a predicate. Default ``"human"`` for
            "last"; pass ``None`` to disable.
        end_on: drop messages from the end (for "last": before trimming; for "first":
            after) until one matches.
        allow_partial: cut the first message that does not fit (content blocks, then
            text pieces from ``text_splitter``; default: split on newlines).
        keep_tool_pairs: never separate an assistant message with tool calls from the
            tool messages that answer it: the whole group is kept or dropped.
        pinned: indices or a predicate; those messages (and their tool groups) are
            always kept and counted against the budget.
        summarizer: called with the dropped messages; its result (a Message or a
            string, which becomes a user message) is inserted where the dropped span
            was and counted against the budget (the window is re-trimmed to make room).
        overflow: when the system + pinned messages alone exceed ``max_tokens``:
            ``"raise"`` a :class:`~tokenward.ContextBudgetError`, or ``"keep"`` them
            and return nothing else (what ``trim_messages`` does with a system message).
        cache_aware: a :class:`~tokenward.context.CacheAwareTrim` kept per conversation:
            the oldest kept message stays the same while the result fits ``max_tokens``
            (so the provider's prompt cache keeps hitting), and when it no longer fits the
            history is cut back to the state's ``low_water`` once. Needs strategy="last",
            no ``allow_partial`` and no ``summarizer``.

    Returns:
        The kept messages in their original order (the same objects; a cut message is a
        copy with new content and the same ``id``/``source``).

    With a ``TokenCounter`` the budget also covers the constant reply-priming tokens the
    chat format adds once, so ``counter.count_messages(result) <= max_tokens``.
    """
    # dicts are converted as the trim looks at them (the first now: counters probe it)
    items = coerce_first(list(messages), CORE_OPS)
    last = strategy == "last"
    if include_system is _DEFAULT:
        include_system = last
    if start_on is _DEFAULT:
        start_on = "human" if last else None
    counts = MessageCounts(items, counter)
    return trim_items(
        items,
        max_tokens,
        counts,
        CORE_OPS,
        strategy=strategy,
        include_system=include_system,
        start_on=_role_predicate(start_on),
        end_on=_role_predicate(end_on),
        allow_partial=allow_partial,
        text_splitter=text_splitter,
        keep_tool_pairs=keep_tool_pairs,
        pinned=pinned,
        summarizer=summarizer,
        overflow=overflow,
        cache_aware=cache_aware,
    )


def group_boundaries(items: Sequence[Any], ops: MessageOps = CORE_OPS) -> list[int]:
    """Start index of every trimming group, plus ``len(items)``.

    A group is one message, or an assistant message with tool calls followed by the
    tool messages that answer it (they are kept or dropped together).
    """
    t = _Trim(
        items,
        cast(MessageCounts, None),  # only the group navigation is used: nothing is counted
        ops,
        strategy="first",
        include_system=False,
        start_on=None,
        end_on=None,
        allow_partial=False,
        splitter=default_text_splitter,
        keep_pairs=True,
        pinned=set(),
        overflow="keep",
    )
    out, i = [], 0
    while i < len(items):
        out.append(i)
        i = t.fwd(i, len(items)) + 1
    out.append(len(items))
    return out
