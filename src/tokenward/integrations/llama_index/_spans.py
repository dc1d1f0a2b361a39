"""Which LLM call owns which span: the bookkeeping that lets every call count once.

LlamaIndex wraps every LLM method in an instrumentation span, and a ``CustomLLM``
such as ``MockLLM`` implements ``chat()`` by calling ``complete()``: one user call
emits *two* LLM events (and two legacy ``CBEventType.LLM`` events). Events carry
only their own ``span_id``; the parent of a span is known to span handlers only.

So this module keeps two small maps:

* ``_SpanTree`` (a ``BaseSpanHandler`` installed once on the root dispatcher)
  remembers the parent of every *open* span;
* the claim registry records which spans an adapter is accounting right now, per
  accountant. An LLM event whose span (or any ancestor span) is already claimed
  for the same accountant is part of a call someone already counts; it is folded
  into that call instead of being recorded again. This is what dedupes MockLLM's
  chat + inner complete, and what keeps ``BudgetedLLM``, ``instrument()`` and the
  legacy callback handler from double counting when they are combined.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher

__all__ = [
    "claim",
    "claimed_ancestor",
    "current_span",
    "ensure_span_tree",
    "expect_lazy_inner",
    "find_owner",
    "owner_of",
    "parent_of",
    "unclaim",
]

_MAX_DEPTH = 64
_MAX_CLAIMS = 10_000


#: ``span id -> parent span id`` and ``span id -> id(instance)`` of the open spans, filled by
#: the process-wide ``_SpanTree``. Module dicts, not pydantic private attributes: those cost
#: microseconds per read (``BaseModel.__getattr__``), and every LLM call reads them.
_parents: dict[str, str | None] = {}
_instances: dict[str, int] = {}


class _SpanTree(BaseSpanHandler[Any]):
    """Remembers ``span id -> parent span id`` for open spans (nothing else)."""

    @classmethod
    def class_name(cls) -> str:
        return "TokenwardSpanTree"

    # The base class would build a span object per span; a dict entry is enough here.
    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _parents[id_] = parent_id
        if instance is not None:
            _instances[id_] = id(instance)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        _parents.pop(id_, None)
        _instances.pop(id_, None)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        _parents.pop(id_, None)
        _instances.pop(id_, None)

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        return None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        return None


_install_lock = threading.Lock()
_tree: _SpanTree | None = None


def ensure_span_tree() -> _SpanTree:
    """Install the span-parent tracker on the root dispatcher (once per process)."""
    global _tree
    if _tree is not None:
        return _tree
    with _install_lock:
        if _tree is None:
            root = get_dispatcher()
            for handler in root.span_handlers:
                if isinstance(handler, _SpanTree):
                    _tree = handler
                    break
            else:
                tree = _SpanTree()
                root.add_span_handler(tree)
                _tree = tree
    return _tree


def current_span() -> str | None:
    """The id of the innermost open instrumentation span in this context."""
    return active_span_id.get()


# ----------------------------------------------------------------------------- claims
_claims_lock = threading.Lock()
_claims: OrderedDict[tuple[int, str], object] = OrderedDict()


@dataclass(frozen=True, slots=True)
class _Alias:
    """A span adopted into another call (see ``find_owner``)."""

    root: str
    owner: object


def claim(accountant: object, span_id: str, owner: object) -> bool:
    """Mark ``span_id`` as accounted by ``owner`` for ``accountant``; False if already taken."""
    key = (id(accountant), span_id)
    with _claims_lock:
        if key in _claims:
            return False
        _claims[key] = owner
        while len(_claims) > _MAX_CLAIMS:  # calls never finished (abandoned streams)
            _claims.popitem(last=False)
    return True


def unclaim(accountant: object, span_id: str) -> None:
    with _claims_lock:
        _claims.pop((id(accountant), span_id), None)
        if not _aliases and not _lazy_by_root:
            return  # (no async stream open: nothing else refers to this span)
        for alias in _aliases.pop((id(accountant), span_id), ()):
            _claims.pop((id(accountant), alias), None)
        key = _lazy_by_root.pop((id(accountant), span_id), None)
        if key is not None:
            waiting = _lazy.get(key)
            if waiting and span_id in waiting:
                waiting.remove(span_id)
            if not waiting:
                _lazy.pop(key, None)


def owner_of(accountant: object, span_id: str | None) -> object | None:
    """The adapter that claimed exactly ``span_id`` for ``accountant``, if any."""
    if span_id is None:
        return None
    return _claims.get((id(accountant), span_id))


def claimed_ancestor(accountant: object, span_id: str | None) -> tuple[str, object] | None:
    """``(span, owner)`` of the nearest claimed span among ``span_id`` and its ancestors."""
    acc = id(accountant)
    depth = 0
    while span_id is not None and depth < _MAX_DEPTH:  # the span, its parent... (open spans)
        owner = _claims.get((acc, span_id))
        if owner is not None:
            if isinstance(owner, _Alias):
                return owner.root, owner.owner
            return span_id, owner
        span_id = _parents.get(span_id)
        depth += 1
    return None


def parent_of(span_id: str | None) -> str | None:
    """The parent of an open span (``None`` at the root or when unknown)."""
    if span_id is None:
        return None
    return _parents.get(span_id)


# ----------------------------------------------------------------------------- lazy streams
# ``CustomLLM.astream_chat`` returns an async generator that calls ``self.stream_chat``
# only when first iterated, in the consumer's context, where the ``astream_chat`` span
# is already closed: the inner span has no parent. Such an inner call is matched to the
# open async stream of the same LLM object that is still waiting for it.
_LAZY_OUTER = {"astream_chat": "stream_chat", "astream_complete": "stream_complete"}
_lazy: dict[tuple[int, int, str], list[str]] = {}
_lazy_by_root: dict[tuple[int, str], tuple[int, int, str]] = {}
_aliases: dict[tuple[int, str], list[str]] = {}


def _method(span_id: str) -> str:
    # dispatcher span ids look like "MockLLM.astream_chat-<uuid4>"
    return span_id.split("-", 1)[0].rsplit(".", 1)[-1]


def expect_lazy_inner(accountant: object, span_id: str, root: str) -> None:
    """If ``span_id`` is an async stream, remember that its inner call belongs to ``root``."""
    if ".astream_" not in span_id:
        return  # (most spans: no need to parse the method name)
    inner = _LAZY_OUTER.get(_method(span_id))
    if inner is None:
        return
    instance = _instances.get(span_id)
    if instance is None:
        return
    key = (id(accountant), instance, inner)
    with _claims_lock:
        if (id(accountant), root) in _lazy_by_root:
            return
        _lazy.setdefault(key, []).append(root)
        _lazy_by_root[(id(accountant), root)] = key


def find_owner(accountant: object, span_id: str | None) -> tuple[str, object] | None:
    """The claimed call ``span_id`` belongs to: an ancestor, or the async stream it implements."""
    found = claimed_ancestor(accountant, span_id)
    if found is not None or span_id is None or not _lazy:
        return found  # (no async stream is waiting for its inner call)
    instance = _instances.get(span_id)
    if instance is None:
        return None
    key = (id(accountant), instance, _method(span_id))
    with _claims_lock:
        waiting = _lazy.get(key)
        if not waiting:
            return None
        root = waiting.pop(0)
        if not waiting:
            _lazy.pop(key, None)
        _lazy_by_root.pop((id(accountant), root), None)
        owner = _claims.get((id(accountant), root))
        if owner is None:
            return None
        # the inner span (and its own inner calls) now count as part of ``root``
        _claims[(id(accountant), span_id)] = _Alias(root, owner)
        _aliases.setdefault((id(accountant), root), []).append(span_id)
    return root, owner
