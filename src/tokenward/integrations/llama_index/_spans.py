"""Which LLM call owns which span: the bookkeeping that lets every call count once.

LlamaIndex wraps every LLM method in an instrumentation span, and a ``CustomLLM``
such as ``MockLLM`` implements ``chat()`` by calling ``complete()``: one user call
emits *two* LLM events (and two legacy ``CBEventType.LLM`` events). Events carry
only their own ``span_id``; the parent of a span is known to span handlers only.

So this module keeps the span facts the adapters need:

* ``_SpanTree`` (a ``BaseSpanHandler`` installed once on the root dispatcher)
  remembers the parent of every *open* span;
* an LLM call in flight is a run in the accountant's call table keyed by its span
  (``_runs``): an LLM event whose span, or an ancestor span, has a run of the same
  accountant is part of a call someone already counts; it is folded into that call
  instead of being recorded again. This is what dedupes MockLLM's chat + inner
  complete, and what keeps ``BudgetedLLM``, ``instrument()`` and the legacy callback
  handler from double counting when they are combined. What the span tree cannot tell
  (the inner call of an async stream, which runs outside its span) is kept here, as are
  the spans of embedding requests in flight (they have no run until they end).
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher

__all__ = [
    "adopt_lazy_inner",
    "adopted_by",
    "claim",
    "current_span",
    "ensure_span_tree",
    "expect_lazy_inner",
    "forget",
    "owner_of",
    "parent_of",
    "unclaim",
]

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


def parent_of(span_id: str | None) -> str | None:
    """The parent of an open span (``None`` at the root or when unknown)."""
    if span_id is None:
        return None
    return _parents.get(span_id)


# ----------------------------------------------------------------------------- embeddings
# An LLM call in flight is a run in the accountant's call table (its ``Run.data`` names
# the adapter accounting it: see ``_runs``). An embedding request has no run while it is in
# flight (it is recorded at its end), so the adapter recording it claims its span here.
_claims_lock = threading.Lock()
_claims: OrderedDict[tuple[int, str], object] = OrderedDict()


def claim(accountant: object, span_id: str, owner: object) -> bool:
    """Mark embedding span ``span_id`` as recorded by ``owner`` for ``accountant``; False
    if already taken."""
    key = (id(accountant), span_id)
    with _claims_lock:
        if key in _claims:
            return False
        _claims[key] = owner
        while len(_claims) > _MAX_CLAIMS:  # requests never finished
            _claims.popitem(last=False)
    return True


def unclaim(accountant: object, span_id: str) -> None:
    with _claims_lock:
        _claims.pop((id(accountant), span_id), None)


def owner_of(accountant: object, span_id: str | None) -> object | None:
    """The adapter that claimed embedding span ``span_id`` for ``accountant``, if any."""
    if span_id is None:
        return None
    return _claims.get((id(accountant), span_id))


# ----------------------------------------------------------------------------- lazy streams
# ``CustomLLM.astream_chat`` returns an async generator that calls ``self.stream_chat``
# only when first iterated, in the consumer's context, where the ``astream_chat`` span
# is already closed: the inner span has no parent. Such an inner call is matched to the
# open async stream of the same LLM object that is still waiting for it, and *adopted*:
# the inner span (and its own inner spans) count as part of the stream's call.
_LAZY_OUTER = {"astream_chat": "stream_chat", "astream_complete": "stream_complete"}
_lazy_lock = threading.Lock()
_lazy: dict[tuple[int, int, str], list[str]] = {}  # (acc, LLM object, method) -> roots
_lazy_by_root: dict[tuple[int, str], tuple[int, int, str]] = {}
_adopted: dict[tuple[int, str], str] = {}  # inner span -> the call (root span) it is part of
_adoptions: dict[tuple[int, str], list[str]] = {}  # root -> inner spans adopted


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
    with _lazy_lock:
        if (id(accountant), root) in _lazy_by_root:
            return
        _lazy.setdefault(key, []).append(root)
        _lazy_by_root[(id(accountant), root)] = key


def adopted_by(accountant: object, span_id: str) -> str | None:
    """The call (root span) an inner span was adopted into, if any."""
    return _adopted.get((id(accountant), span_id)) if _adopted else None


def adopt_lazy_inner(
    accountant: object, span_id: str, pending: Callable[[str], bool]
) -> str | None:
    """The async stream call (its root span) ``span_id`` implements, adopting ``span_id`` into
    it, when such a stream of the same LLM object waits and its call is still ``pending``."""
    if not _lazy:
        return None  # (no async stream is waiting for its inner call)
    instance = _instances.get(span_id)
    if instance is None:
        return None
    acc = id(accountant)
    key = (acc, instance, _method(span_id))
    with _lazy_lock:
        waiting = _lazy.get(key)
        if not waiting:
            return None
        root = waiting.pop(0)
        if not waiting:
            _lazy.pop(key, None)
        _lazy_by_root.pop((acc, root), None)
        if not pending(root):
            return None
        _adopted[(acc, span_id)] = root
        _adoptions.setdefault((acc, root), []).append(span_id)
    return root


def forget(accountant: object, root: str) -> None:
    """The call on span ``root`` ended: drop what the lazy-stream bookkeeping holds for it."""
    if not _lazy_by_root and not _adoptions:
        return  # (no async stream open)
    acc = id(accountant)
    with _lazy_lock:
        for span_id in _adoptions.pop((acc, root), ()):
            _adopted.pop((acc, span_id), None)
        key = _lazy_by_root.pop((acc, root), None)
        if key is not None:
            waiting = _lazy.get(key)
            if waiting and root in waiting:
                waiting.remove(root)
            if not waiting:
                _lazy.pop(key, None)
