"""Trimming that keeps the prompt cache warm: a cut point with hysteresis.

Providers cache prompt *prefixes*: a request whose first tokens equal an earlier
request's is billed those tokens at the cache-read price (Anthropic: 0.1x input, writes
1.25x; OpenAI: automatic, from 1,024 tokens in 128-token steps, reads 0.25-0.5x). A
trimmer that drops the oldest message every turn changes the prefix right after the
system prompt every turn, so nothing but the system prompt is ever read from cache, and
with Anthropic every turn *writes* the whole history again at 1.25x: trimmed prompts can
cost more than untrimmed ones.

:class:`CacheAwareTrim` keeps the cut point (the first kept message after the system
and pinned ones) fixed while the kept history fits ``max_tokens`` (the high-water mark),
so each turn's prompt starts with the previous turn's prompt; when it no longer fits, it
cuts once, back to ``low_water``, and holds again. The prompt then grows between cuts by
the new turns only, and a cut is paid once per ``max_tokens - low_water`` tokens of
conversation instead of every turn. One object per conversation:

    state = CacheAwareTrim(low_water=0.6, rules="anthropic")
    for turn in conversation:
        prompt = trim_history(history, 16_000, "claude-sonnet-4", cache_aware=state)
        # Anthropic: put cache_control on prompt[i] for i in state.breakpoints

It follows the history by the content key of the first kept message (so the caller may
pass a new list each turn, or a list whose oldest messages were removed); if that
message is gone it starts over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenward.context._counters import message_key
from tokenward.errors import ConfigurationError

__all__ = ["CACHE_RULES", "CacheAwareTrim", "CacheRules"]


@dataclass(frozen=True, slots=True)
class CacheRules:
    """How a provider caches prompt prefixes."""

    name: str
    min_tokens: int  # shortest prefix that is cached at all
    increment: int  # cached prefixes grow in steps of this many tokens past min_tokens
    max_breakpoints: int  # explicit cache breakpoints per request (0: automatic caching)
    lookback: int  # blocks before a breakpoint searched for an earlier cache entry

    def cacheable(self, prefix_tokens: int) -> int:
        """Tokens of a matching prefix of ``prefix_tokens`` that can be read from cache."""
        if prefix_tokens < self.min_tokens:
            return 0
        return prefix_tokens - (prefix_tokens - self.min_tokens) % self.increment


#: Anthropic: explicit ``cache_control`` breakpoints (at most 4 per request; a hit is
#: looked for at a breakpoint and up to 20 blocks before it), 1,024 tokens minimum for
#: Claude Sonnet 4 / Opus 4 (2,048 for Haiku 3.x, 4,096 for Haiku 4.5 and Opus 4.5+:
#: pass ``CacheRules("anthropic", 4096, 1, 4, 20)`` for those).
#: OpenAI: automatic prefix caching from 1,024 tokens, hits in 128-token increments.
CACHE_RULES: dict[str, CacheRules] = {
    "anthropic": CacheRules("anthropic", 1024, 1, 4, 20),
    "openai": CacheRules("openai", 1024, 128, 0, 0),
}


@dataclass
class CacheAwareTrim:
    """The cut point of one conversation, kept across turns (see the module docstring).

    Args:
        low_water: where a cut goes back to: a fraction of ``max_tokens`` (``0 < x < 1``)
            or a token count. The prompt then grows from about this size to
            ``max_tokens`` before the next cut.
        rules: the provider's prompt caching: ``"anthropic"``, ``"openai"`` or a
            :class:`CacheRules`; decides :attr:`breakpoints`.

    After each :func:`~tokenward.context.trim_history` call with ``cache_aware=`` this
    object tells what happened: :attr:`held` (the cut did not move: the previous prompt is
    a prefix of this one), :attr:`cuts` (how often it moved), :attr:`breakpoints`
    (positions in the returned list to mark with Anthropic ``cache_control``; empty for
    automatic caching).
    """

    low_water: float | int = 0.6
    rules: CacheRules | str = "anthropic"
    held: bool = field(default=False, init=False)
    cuts: int = field(default=0, init=False)
    turns: int = field(default=0, init=False)
    breakpoints: tuple[int, ...] = field(default=(), init=False)
    _cut: int | None = field(default=None, init=False, repr=False)
    _cut_key: Any = field(default=None, init=False, repr=False)
    _tail_key: Any = field(default=None, init=False, repr=False)
    _tail: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.rules, str):
            try:
                self.rules = CACHE_RULES[self.rules]
            except KeyError:
                raise ConfigurationError(
                    f"unknown cache rules {self.rules!r}: pass 'anthropic', 'openai' or "
                    f"a tokenward.context.CacheRules(...)"
                ) from None
        lw = self.low_water
        if isinstance(lw, bool) or not isinstance(lw, int | float) or lw <= 0:
            raise ConfigurationError(
                f"low_water must be a fraction of max_tokens (0 < x < 1) or a token count; "
                f"got {lw!r}"
            )
        if isinstance(lw, float) and lw >= 1:
            raise ConfigurationError(
                f"low_water={lw} as a fraction must be below 1 (pass an int for a token count)"
            )

    @property
    def cache_rules(self) -> CacheRules:
        assert isinstance(self.rules, CacheRules)
        return self.rules

    def low_tokens(self, max_tokens: int) -> int:
        """The low-water mark in tokens for a high-water mark of ``max_tokens``."""
        if isinstance(self.low_water, float):
            return int(max_tokens * self.low_water)
        return min(int(self.low_water), max_tokens)

    def reset(self) -> None:
        """Forget the cut point (the next call trims as if the conversation were new)."""
        self._cut = self._cut_key = self._tail_key = self._tail = None
        self.held = False
        self.breakpoints = ()

    # -- used by the trimming algorithm ---------------------------------------------------
    def locate(self, items: Sequence[Any]) -> int | None:
        """Index of the remembered cut in ``items`` (None: no cut yet, or it is gone)."""
        cut = self._cut
        if cut is None:
            return None
        if self._cut_key is None:  # everything before ``cut`` was dropped
            return cut if cut <= len(items) else None
        if cut < len(items) and message_key(items[cut]) == self._cut_key:
            return cut
        for j in range(min(cut, len(items) - 1), -1, -1):  # oldest messages were removed
            if message_key(items[j]) == self._cut_key:
                return j
        return None

    def remember(
        self,
        items: Sequence[Any],
        kept: list[int],
        start: int,
        held: bool,
        is_fixed: Callable[[int], bool],
    ) -> None:
        """Record the cut (``start``: first kept window index) and the breakpoints."""
        self.turns += 1
        self.held = held
        if not held:
            self.cuts += 1
        self._cut = start
        self._cut_key = message_key(items[start]) if start < len(items) else None
        self.breakpoints = self._breakpoints(items, kept, is_fixed)
        self._tail_key = message_key(items[kept[-1]]) if kept else None
        self._tail = kept[-1] if kept else None

    # -- persistence ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The cut point as plain data (JSON-safe): positions in the list given to the last
        trim, plus the counters. :meth:`restore` rebuilds the state from it and the same
        history (or one that only grew), e.g. for a memory that is serialized with its
        messages between turns."""
        return {
            "cut": self._cut,
            "keyed": self._cut_key is not None,
            "tail": self._tail,
            "cuts": self.cuts,
            "turns": self.turns,
        }

    def restore(self, items: Sequence[Any], snapshot: dict[str, Any] | None) -> None:
        """Take the cut point of :meth:`snapshot` back, reading the remembered messages from
        ``items`` (the history the snapshot was taken on, or a longer one). Positions that
        do not exist in ``items`` are ignored: the next trim starts over."""
        self.reset()
        if not snapshot:
            return
        self.cuts = int(snapshot.get("cuts") or 0)
        self.turns = int(snapshot.get("turns") or 0)
        cut, tail = snapshot.get("cut"), snapshot.get("tail")
        if not isinstance(cut, int) or not 0 <= cut <= len(items):
            return
        if snapshot.get("keyed"):
            if cut == len(items):
                return
            self._cut_key = message_key(items[cut])
        self._cut = cut
        if isinstance(tail, int) and 0 <= tail < len(items):
            self._tail, self._tail_key = tail, message_key(items[tail])

    def _breakpoints(
        self, items: Sequence[Any], kept: list[int], is_fixed: Callable[[int], bool]
    ) -> tuple[int, ...]:
        """Anthropic breakpoints in the output: the end of the fixed prefix (system and
        pinned messages: read on every turn, also after a cut), the previous turn's last
        message when it is further back than the lookback (so its cache entry is still
        found), and the last message (written now, read next turn)."""
        rules = self.cache_rules
        if not rules.max_breakpoints or not kept:
            return ()
        points: list[int] = []
        prefix = 0
        while prefix < len(kept) and is_fixed(kept[prefix]):
            prefix += 1
        if prefix:
            points.append(prefix - 1)
        last = len(kept) - 1
        if self.held and self._tail_key is not None:
            for pos in range(last - 1, max(-1, last - 1 - 4 * rules.lookback), -1):
                if message_key(items[kept[pos]]) == self._tail_key:
                    if last - pos > rules.lookback:
                        points.append(pos)
                    break
        points.append(last)
        out = sorted(set(points))
        return tuple(out[-rules.max_breakpoints :])
