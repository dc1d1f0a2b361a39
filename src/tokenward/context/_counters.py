"""Resolve the ``counter`` argument of the context functions.

A counter may be:

* a ``TokenCounter`` (``tokenward.counting``): ``count_message`` per message, plus the
  constant chat overhead (reply priming) that ``count_messages`` adds once;
* a model name: ``tokenward.counting.get_counter(model)`` (imported lazily);
* a per-message callable ``(message) -> int``;
* a list callable ``(list[message]) -> int``, like LangChain's ``token_counter``.

A list counter is called on whole lists unless it is *additive*: its count of a list is a
constant plus the sum of per-message counts. Then it is decomposed (each message counted
once, as ``fn([m]) - fn([])``; the constant is ``fn([])``) and trimming walks the history
instead of searching over prefixes. Additive are: counters marked
``per_list(fn, additive=True)``, and the known ones in :data:`ADDITIVE_LIST_COUNTERS`
(LangChain's ``count_tokens_approximately`` with integral per-message and per-image
tokens and no usage scaling, the default ``BaseLanguageModel.get_num_tokens_from_messages``
(a sum of per-message ``get_num_tokens``, used by every chat model that does not override
it, e.g. ChatMistralAI, ChatGroq, ChatOllama), and ``BaseChatOpenAI``'s, which counts 3
tokens per message plus 3 for the reply: ChatOpenAI, AzureChatOpenAI). A tokenward
``TokenCounter.count_messages`` method is counted through its ``TokenCounter``. Each is
checked for additivity on random lists by a property test
(``tests/test_context_counters.py``). ChatAnthropic asks Anthropic's API for every count:
not additive, so it is searched.

Per-message and list callables are told apart by, in order: an explicit mark
(:func:`per_message` / :func:`per_list`), the first parameter's annotation (resolved
even when it is a string under ``from __future__ import annotations``: ``list[...]``,
``Sequence[...]``, ``Iterable[...]`` mean a list counter, anything else a per-message
counter), and for unannotated callables a probe: the callable is first called with a
one-message list (LangChain's convention); if that raises ``TypeError``,
``AttributeError``, ``KeyError`` or ``IndexError`` it is called with the message itself.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import functools
import inspect
import typing
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from tokenward._memo import remember
from tokenward.errors import ConfigurationError

__all__ = ["ADDITIVE_LIST_COUNTERS", "cached_counter", "per_list", "per_message"]

_KIND_ATTR = "__tokenward_counter_kind__"
_ADDITIVE_ATTR = "__tokenward_additive__"
_LIST_ORIGINS = (list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.MutableSequence)
_LIST_PREFIXES = (
    "list",
    "List",
    "Sequence",
    "Iterable",
    "Collection",
    "tuple",
    "Tuple",
    "typing.List",
    "typing.Sequence",
    "typing.Iterable",
    "collections.abc.",
)


def per_message(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """Mark ``fn`` as a per-message counter (``message -> int``) and return it."""
    try:
        setattr(fn, _KIND_ATTR, "message")
    except (AttributeError, TypeError):
        return _Marked(fn, "message")
    return fn


def per_list(
    fn: Callable[[list[Any]], int], *, additive: bool = False
) -> Callable[[list[Any]], int]:
    """Mark ``fn`` as a list counter (``list[message] -> int``) and return it.

    ``additive=True`` declares that ``fn(messages)`` always equals ``fn([])`` plus the sum
    of ``fn([m]) - fn([])`` over the messages, so each message is counted once. Without
    it a list counter is assumed additive only when it is one of
    :data:`ADDITIVE_LIST_COUNTERS`; otherwise it is called on whole lists.
    """
    try:
        setattr(fn, _KIND_ATTR, "list")
        if additive:
            setattr(fn, _ADDITIVE_ATTR, True)
    except (AttributeError, TypeError):
        return _Marked(fn, "list", additive)
    return fn


class _Marked:
    __slots__ = ("fn", _ADDITIVE_ATTR, _KIND_ATTR)

    def __init__(self, fn: Callable[..., int], kind: str, additive: bool = False) -> None:
        self.fn = fn
        setattr(self, _KIND_ATTR, kind)
        setattr(self, _ADDITIVE_ATTR, additive)

    def __call__(self, arg: Any) -> int:
        return self.fn(arg)


def cached_counter(fn: Callable[[Any], int], maxsize: int = 65536) -> Callable[[Any], int]:
    """Wrap a per-message counter with an LRU cache keyed by message content.

    The key is (role/type, content, name, tool_call_id, tool calls), so a message that
    is re-created with the same content hits the cache. Use it when the same history is
    trimmed repeatedly with a plain callable (``TokenCounter`` objects cache already).
    A message object seen before whose ``content`` is the same object is answered
    without building the key (mutating a content list in place is not detected: replace
    the content, as LangChain's own helpers do).
    """
    cache: OrderedDict[Any, int] = OrderedDict()
    # fast path: the same object with the same content object as last time
    seen: dict[int, tuple[Any, Any, int]] = {}

    def counted(message: Any) -> int:
        hit = seen.get(id(message))
        if hit is not None and hit[0] is message:
            content = getattr(message, "content", None)
            if content is hit[1]:
                return hit[2]
        value = _by_key(message)
        remember(seen, id(message), (message, getattr(message, "content", None), value), maxsize)
        return value

    def _by_key(message: Any) -> int:
        key = message_key(message)
        try:
            value = cache[key]
        except KeyError:
            value = fn(message)
            cache[key] = value
            if len(cache) > maxsize:
                cache.popitem(last=False)
            return value
        except TypeError:  # unhashable key part: do not cache
            return fn(message)
        return value

    setattr(counted, _KIND_ATTR, "message")
    counted.cache = cache  # type: ignore[attr-defined]
    return counted


def _freeze(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, Mapping):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return repr(value)


def message_key(message: Any) -> Any:
    """A hashable key for a message's counted content (core ``Message``, dict or framework)."""
    d = message if isinstance(message, Mapping) else getattr(message, "__dict__", None)
    if d is not None:  # dicts, and pydantic/plain objects (fields live in __dict__)
        get = d.get
        role, content = get("role") or get("type"), get("content")
        name, tcid, calls = get("name"), get("tool_call_id"), get("tool_calls")
    else:  # slotted objects such as tokenward.Message
        role = getattr(message, "role", None) or getattr(message, "type", None)
        content = getattr(message, "content", None)
        name = getattr(message, "name", None)
        tcid = getattr(message, "tool_call_id", None)
        calls = getattr(message, "tool_calls", None)
    if not isinstance(content, str):
        content = _freeze(content)
    if calls:
        calls = _freeze(calls) if not isinstance(calls, tuple) else calls
    else:
        calls = None
    return (type(message).__name__, role, content, name, tcid, calls)


def _annotation_kind(fn: Callable[..., Any]) -> str | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not params:
        return None
    param = params[0]
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if isinstance(ann, str):
        plain = inspect.isfunction(fn) or inspect.ismethod(fn)
        target = fn if plain else type(fn).__call__
        try:
            hints = typing.get_type_hints(target)
            ann = hints.get(param.name, ann)
        except (NameError, TypeError, AttributeError, SyntaxError):  # unresolvable: read the string
            pass
    if isinstance(ann, str):
        text = ann.strip().strip("'\"")
        return "list" if text.startswith(_LIST_PREFIXES) else "message"
    origin = typing.get_origin(ann)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        kinds = {
            "list" if (typing.get_origin(a) or a) in _LIST_ORIGINS else "message"
            for a in typing.get_args(ann)
            if a is not type(None)
        }
        return kinds.pop() if len(kinds) == 1 else None
    if origin is not None:
        return "list" if origin in _LIST_ORIGINS else "message"
    if ann in _LIST_ORIGINS:
        return "list"
    if isinstance(ann, type):
        return "message"
    return None


_KIND_CACHE: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def counter_kind(fn: Callable[..., Any]) -> str | None:
    """``"message"``, ``"list"`` or ``None`` (unknown: decide by probing)."""
    kind = getattr(fn, _KIND_ATTR, None)
    if kind == "message" or kind == "list":
        return str(kind)
    try:
        return _KIND_CACHE[fn]
    except (KeyError, TypeError):
        pass
    kind = _annotation_kind(fn)
    with contextlib.suppress(TypeError):  # not weak-referenceable: not cached
        _KIND_CACHE[fn] = kind
    return kind


def _integral(value: Any) -> bool:
    try:
        return float(value).is_integer()
    except (TypeError, ValueError):
        return False


def _approximately_is_additive(options: Mapping[str, Any]) -> bool:
    """``count_tokens_approximately`` rounds up per message, then once for the total: the
    total is the per-message sum when the per-message and per-image extras are integers
    and no usage scaling applies (it multiplies the total by a ratio)."""
    return (
        _integral(options.get("extra_tokens_per_message", 3))
        and _integral(options.get("tokens_per_image", 85))
        and not options.get("use_usage_metadata_scaling", False)
    )


def _always(options: Mapping[str, Any]) -> bool:
    return True


# List counters whose count is a constant plus a per-message sum, keyed by the module and
# qualified name of the defining function (compared as strings: no framework is imported).
# The value tells whether the keyword options bound to it (functools.partial) keep it so.
ADDITIVE_LIST_COUNTERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], bool]] = {
    ("langchain_core.messages.utils", "count_tokens_approximately"): _approximately_is_additive,
    ("langchain_core.messages.utils", "_approximate_token_counter"): _always,
    (
        "langchain_core.language_models.base",
        "BaseLanguageModel.get_num_tokens_from_messages",
    ): _always,
    ("langchain_openai.chat_models.base", "BaseChatOpenAI.get_num_tokens_from_messages"): _always,
}


def _unwrap(fn: Any) -> tuple[Any, dict[str, Any]] | None:
    """The underlying function and the keyword options bound to it (None: positional
    arguments are bound, which the known counters do not take)."""
    options: dict[str, Any] = {}
    for _ in range(8):
        if isinstance(fn, _Marked):
            fn = fn.fn
        elif isinstance(fn, functools.partial):
            if fn.args:
                return None
            options = {**fn.keywords, **options}
            fn = fn.func
        else:
            break
    return getattr(fn, "__func__", fn), options


def is_additive_list(fn: Any) -> bool:
    """True if the list counter ``fn`` is declared or known to be additive."""
    if getattr(fn, _ADDITIVE_ATTR, False):
        return True
    target = _unwrap(fn)
    if target is None:
        return False
    func, options = target
    key = (getattr(func, "__module__", None), getattr(func, "__qualname__", None))
    check = ADDITIVE_LIST_COUNTERS.get(key)  # type: ignore[arg-type]
    return check is not None and check(options)


def _token_counter_of(fn: Any) -> Any:
    """The tokenward ``TokenCounter`` whose bound ``count_messages`` ``fn`` is, else None."""
    target = _unwrap(fn)
    if target is None or target[1]:
        return None
    owner = getattr(fn.fn if isinstance(fn, _Marked) else fn, "__self__", None)
    func = target[0]
    if (
        owner is not None
        and getattr(func, "__name__", None) == "count_messages"
        and str(getattr(func, "__module__", "")).startswith("tokenward.")
        and hasattr(owner, "count_message")
    ):
        return owner
    return None


_PROBE_ERRORS = (TypeError, AttributeError, KeyError, IndexError)


class MessageCounts:
    """Counts for one trim call: per-index cache, list counting, constant overhead.

    ``additive``: the count of a list is ``overhead`` plus the sum of ``one(i)``; true for
    per-message counters, ``TokenCounter`` objects and additive list counters (see the
    module docstring); other list counters are called on whole lists (``of``).
    ``system_apart``: the ``trim_messages`` convention for list counters: a kept system
    message is counted as a list of its own (with its own ``overhead``) and the rest as
    another list, so an additive list counter gives the same answers as on whole lists.
    """

    __slots__ = (
        "_cache",
        "_list_fn",
        "_one_fn",
        "_sum_fn",
        "additive",
        "calls",
        "items",
        "overhead",
        "system_apart",
    )

    def __init__(
        self,
        items: typing.Sequence[Any],
        counter: Any,
        *,
        to_message: Callable[[Any], Any] | None = None,
    ) -> None:
        self.items = items
        self.overhead = 0
        self.calls = 0
        self.system_apart = False
        self._cache: dict[int, int] = {}
        self._one_fn: Callable[[Any], int] | None = None
        self._list_fn: Callable[[list[Any]], int] | None = None
        self._sum_fn: Callable[[list[Any]], int] | None = None  # an additive list counter
        if counter is None:
            raise ConfigurationError(
                "no token counter given: pass counter=<model name>, a TokenCounter "
                "(tokenward.counting.get_counter('gpt-4o')) or a callable"
            )
        if isinstance(counter, str):
            from tokenward.counting import get_counter  # lazy: parallel module

            counter = get_counter(counter)
        counter = _token_counter_of(counter) or counter
        if hasattr(counter, "count_message") and hasattr(counter, "count_messages"):
            tc = counter
            conv = to_message or (lambda m: m)
            self._one_fn = lambda m: tc.count_message(conv(m))
            if items:
                first = conv(items[0])
                try:
                    self.overhead = max(0, tc.count_messages([first]) - tc.count_message(first))
                except Exception:  # noqa: BLE001 - a partial counter: no overhead
                    self.overhead = 0
            self.additive = True
            return
        if not callable(counter):
            raise ConfigurationError(
                f"counter must be a model name, a TokenCounter or a callable; got "
                f"{type(counter).__name__}"
            )
        kind = counter_kind(counter)
        if kind is None and items:
            kind = self._probe(counter, items[0])
        if kind == "message":
            self._one_fn = counter
            self.additive = True
        elif is_additive_list(counter) and self._decompose(counter):
            self.additive = True
            self.system_apart = True
        else:
            self._list_fn = counter
            self.additive = False

    def _decompose(self, fn: Callable[[list[Any]], int]) -> bool:
        try:
            base = fn([])
        except Exception:  # noqa: BLE001 - it rejects empty lists: count whole lists
            return False
        self.calls += 1
        self.overhead = base
        self._one_fn = lambda m: fn([m]) - base
        self._list_fn = None
        self._sum_fn = fn
        self._cache.clear()  # a probe may have cached fn([first]) with the constant in it
        return True

    def _probe(self, fn: Callable[..., int], first: Any) -> str:
        try:
            value = fn([first])
        except _PROBE_ERRORS as list_error:
            try:
                value = fn(first)
            except Exception:  # noqa: BLE001 - neither way works: report the list call
                raise list_error from None
            self._cache[0] = int(value)
            return "message"
        if not isinstance(value, int):
            raise ConfigurationError(f"token counter returned {type(value).__name__}, expected int")
        return "list"

    def one(self, i: int) -> int:
        """Tokens of ``items[i]`` alone (cached for this call; without the overhead)."""
        try:
            return self._cache[i]
        except KeyError:
            pass
        if self._one_fn is not None:
            value = self._one_fn(self.items[i])
        else:
            value = self._list_fn([self.items[i]])  # type: ignore[misc]
        self.calls += 1
        self._cache[i] = value
        return value

    def single(self, item: Any) -> int:
        """Tokens of a message that is not in ``items`` (a truncated copy, a summary)."""
        self.calls += 1
        if self._one_fn is not None:
            return self._one_fn(item)
        return self._list_fn([item])  # type: ignore[misc]

    @property
    def batches(self) -> bool:
        """One call counts many messages at the cost of about one (a list counter)."""
        return self._sum_fn is not None

    def many(self, items: list[Any]) -> int:
        """Sum of the messages' own counts (no overhead); one call of an additive list
        counter."""
        if not items:
            return 0
        if self._sum_fn is not None:
            self.calls += 1
            return self._sum_fn(items) - self.overhead
        return sum(map(self.single, items))

    def of(self, items: list[Any]) -> int:
        """Tokens of a whole list, counted the way the counter counts lists."""
        if self._list_fn is not None:
            self.calls += 1
            return self._list_fn(items)
        assert self._one_fn is not None
        self.calls += len(items)
        return sum(self._one_fn(m) for m in items) + self.overhead
