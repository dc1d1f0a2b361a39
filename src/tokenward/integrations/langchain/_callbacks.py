"""LangChain callback handlers that account every model call through an Accountant."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from tokenward.errors import BudgetExceededError
from tokenward.integrations._common import PROPAGATE
from tokenward.integrations.langchain._common import (
    dims_from_run,
    extract_result,
    max_output_from_params,
    model_from_start,
    swallow_internal_errors,
)
from tokenward.integrations.langchain._common import logger as _adapter_logger
from tokenward.integrations.langchain._convert import messages_for_preflight

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

    from tokenward.accountant import Accountant, Tracker

__all__ = ["AsyncTokenwardCallbackHandler", "TokenwardCallbackHandler", "tracking"]

_MAX_PENDING = 10_000

#: Errors that reach the caller (see tokenward.integrations._common).
_PROPAGATE = PROPAGATE

#: True while a TokenBudgetMiddleware accounts the model call being made: handlers skip it.
_accounted_elsewhere: ContextVar[bool] = ContextVar("tokenward_accounted_elsewhere", default=False)


class _DenialLogFilter(logging.Filter):
    """Drops LangChain's "Error in TokenwardCallbackHandler... callback" warning for denials.

    LangChain logs a warning for every exception a callback raises, even when the handler
    has ``raise_error = True`` and the exception is re-raised to the caller. A budget
    denial (``BudgetExceededError``) and an unknown model (``UnknownModelError``) reach the
    caller as the exception itself; logging them as a callback error as well would be
    misleading noise. Anything else (including other handlers' errors) is left alone.
    """

    _HANDLERS = ("TokenwardCallbackHandler", "AsyncTokenwardCallbackHandler")
    _PREFIXES = ("BudgetExceededError(", "UnknownModelError(")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[0] in self._HANDLERS:
            return not str(args[2]).startswith(self._PREFIXES)
        return True


logging.getLogger("langchain_core.callbacks.manager").addFilter(_DenialLogFilter())


def _default_accountant() -> Accountant:
    from tokenward.accountant import get_default_accountant

    return get_default_accountant()


def _log_internal_error() -> None:
    # what swallow_internal_errors() logs, without a context manager on the hot path
    _adapter_logger.error("internal error in tokenward", exc_info=True)


class _Run:
    """Book-keeping for one model call between its start and end events."""

    __slots__ = ("dims", "kind", "model", "preflighted", "rid", "started")

    def __init__(self, rid: str, model: str | None, dims: dict[str, Any], kind: str) -> None:
        self.rid = rid  # the run id as the accountant sees it (str(UUID) computed once)
        self.model = model
        self.dims = dims
        self.started = time.perf_counter()
        self.preflighted = False
        self.kind = kind


class _HandlerCore:
    """The logic shared by the sync and async handlers (all of it synchronous)."""

    accountant: Accountant

    def _init_core(
        self,
        accountant: Accountant | None,
        default_model: str | None,
        dims: Mapping[str, Any],
        max_pending: int,
    ) -> None:
        self.accountant = accountant if accountant is not None else _default_accountant()
        self.default_model = default_model
        self.dims: dict[str, Any] = {k: v for k, v in dims.items() if v is not None}
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._lock = threading.Lock()
        self._max_pending = max_pending
        #: tools run while this handler was attached, by name (executions, not requests)
        self.tool_runs: dict[str, int] = {}
        self._tools: dict[str, str] = {}

    # -- run map -------------------------------------------------------------------------
    def _put(self, run_id: str, run: _Run) -> None:
        evicted: list[str] = []
        with self._lock:
            self._runs[run_id] = run
            while len(self._runs) > self._max_pending:
                _, old = self._runs.popitem(last=False)
                evicted.append(old.rid)
        for old_id in evicted:  # a run that never ended must not hold budget forever
            with swallow_internal_errors():
                self.accountant.release(old_id, error="run state evicted (never ended)")

    def _pop(self, run_id: str) -> _Run | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    # -- events --------------------------------------------------------------------------
    def _start(
        self,
        kind: str,
        serialized: Mapping[str, Any] | None,
        messages: list[dict[str, Any]],
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        if _accounted_elsewhere.get():
            return
        rid = str(run_id)
        params = kwargs.get("invocation_params")
        model = model_from_start(serialized, params, metadata) or self.default_model
        dims = dims_from_run(self.dims, metadata, tags)
        run = _Run(rid, model, dims, kind)
        self._put(rid, run)
        if model is None:
            raise ValueError(
                "cannot tell which model this run uses (no model/model_name in its invocation "
                "params or ls_model_name in metadata); pass default_model= to the handler"
            )
        try:
            self.accountant.preflight(
                rid,
                model,
                messages=messages,
                tools=(params or {}).get("tools") or None,
                max_output_tokens=max_output_from_params(params),
                dims=dims,
                parent_id=str(parent_run_id) if parent_run_id else None,
                kind=kind,
            )
        except _PROPAGATE:
            # denied, or a model nobody can price: the model will not run, no end event
            # will come; the caller gets the error (not a silently unrecorded call)
            self._pop(rid)
            raise
        run.preflighted = True
        run.started = time.perf_counter()  # latency is the model's, not our pre-flight's

    def _end(self, response: LLMResult, run_id: UUID) -> None:
        rid = str(run_id)
        run = self._pop(rid)
        if run is None:
            return
        info = extract_result(response)
        latency_ms = (time.perf_counter() - run.started) * 1000.0
        model = info.model or run.model or self.default_model
        self.accountant.settle(
            rid,
            info.usage,
            model=model,
            status="ok",
            latency_ms=latency_ms,
            output_text=info.output_text if info.usage is None else None,
            tool_names=tuple(info.tool_names),
            dims=run.dims,
        )

    def _error(self, error: BaseException, run_id: UUID, kwargs: Mapping[str, Any]) -> None:
        run = self._pop(str(run_id))
        if run is None:
            return
        response = kwargs.get("response")
        info = extract_result(response) if response is not None else None
        latency_ms = (time.perf_counter() - run.started) * 1000.0
        if info is not None and info.usage is None and info.output_text:
            # the provider produced output before failing (a broken stream): the prompt was
            # processed, so record an estimated error event rather than nothing
            self.accountant.settle(
                run.rid,
                None,
                model=info.model or run.model,
                status="error",
                latency_ms=latency_ms,
                output_text=info.output_text,
                tool_names=tuple(info.tool_names),
                dims=run.dims,
                error=repr(error),
            )
            return
        extra: dict[str, Any] = {}
        model = (info.model if info is not None else None) or run.model
        if not run.preflighted and model:  # let the core record orphan partial usage
            extra["model"] = model
        self.accountant.release(
            run.rid,
            partial_usage=info.usage if info is not None else None,
            error=error,
            **extra,
        )

    def _tool_start(
        self, serialized: Mapping[str, Any] | None, run_id: UUID, kwargs: Mapping[str, Any]
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        with self._lock:
            self._tools[str(run_id)] = str(name)
            if len(self._tools) > self._max_pending:
                self._tools.pop(next(iter(self._tools)))

    def _tool_end(self, run_id: UUID) -> None:
        with self._lock:
            name = self._tools.pop(str(run_id), None)
            if name is not None:
                self.tool_runs[name] = self.tool_runs.get(name, 0) + 1

    @property
    def pending_runs(self) -> int:
        """Model calls started but not ended yet."""
        return len(self._runs)


class TokenwardCallbackHandler(_HandlerCore, BaseCallbackHandler):
    """Accounts every LangChain chat/LLM call through a tokenward ``Accountant``.

    Attach per call (``config={"callbacks": [handler]}``), on a runnable
    (``chain.with_config(callbacks=[handler])``) or for a whole block with
    :func:`tracking`. Per model call it:

    * on start: reads the model (invocation params, serialized kwargs,
      ``ls_model_name``), the dimensions (handler defaults overridden by run
      metadata ``user_id``/``conversation_id``/``thread_id``/``session_id``/``agent``
      and tags) and calls ``accountant.preflight`` with the prompt messages and
      bound tools. A hard budget that denies raises :class:`~tokenward.BudgetExceededError`
      out of ``invoke`` *before* the model runs;
    * on end: hands the usage of every generation to ``accountant.settle``; with
      no usage reported (a stream without usage) it passes the output text and the
      core records an estimated event;
    * on error: ``accountant.release`` (with partial usage when there is some).

    Any other failure inside the handler is logged ("internal error in tokenward")
    and swallowed, never raised into your chain. (LangChain logs a warning for every
    exception a callback raises; tokenward filters that one warning out for budget
    denials, which reach the caller as the exception itself.) Thread-safe: one handler can
    serve ``batch``/``RunnableParallel`` runs concurrently.

    Args:
        accountant: the Accountant to use; default: ``get_default_accountant()``.
        default_model: model name to use when a run does not say which model it is.
        max_pending: bound on in-flight runs remembered (oldest released first).
        **dims: default dimensions: ``user_id``, ``conversation_id``,
            ``session_id``, ``agent``, ``tags`` (a dict).
    """

    raise_error = True
    run_inline = True
    ignore_chain = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(
        self,
        accountant: Accountant | None = None,
        *,
        default_model: str | None = None,
        max_pending: int = _MAX_PENDING,
        **dims: Any,
    ) -> None:
        super().__init__()
        self._init_core(accountant, default_model, dims, max_pending)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start(
                "chat",
                serialized,
                messages_for_preflight(messages),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except _PROPAGATE:
            raise
        except Exception:
            _log_internal_error()

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            msgs = [{"role": "user", "content": p} for p in prompts]
            self._start(
                "completion", serialized, msgs, run_id, parent_run_id, tags, metadata, kwargs
            )
        except _PROPAGATE:
            raise
        except Exception:
            _log_internal_error()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._end(response, run_id)
        except BudgetExceededError:
            raise
        except Exception:
            _log_internal_error()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._error(error, run_id, kwargs)
        except BudgetExceededError:
            raise
        except Exception:
            _log_internal_error()

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        with swallow_internal_errors():
            self._tool_start(serialized, run_id, kwargs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with swallow_internal_errors():
            self._tool_end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with swallow_internal_errors():
            self._tool_end(run_id)


class AsyncTokenwardCallbackHandler(_HandlerCore, AsyncCallbackHandler):
    """The async twin of :class:`TokenwardCallbackHandler` (same arguments, same behaviour).

    LangChain awaits its events in async chains (``ainvoke``/``astream``), so a
    budget denial still stops the call before the model runs.
    """

    raise_error = True
    run_inline = True
    ignore_chain = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(
        self,
        accountant: Accountant | None = None,
        *,
        default_model: str | None = None,
        max_pending: int = _MAX_PENDING,
        **dims: Any,
    ) -> None:
        super().__init__()
        self._init_core(accountant, default_model, dims, max_pending)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start(
                "chat",
                serialized,
                messages_for_preflight(messages),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except _PROPAGATE:
            raise
        except Exception:
            _log_internal_error()

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            msgs = [{"role": "user", "content": p} for p in prompts]
            self._start(
                "completion", serialized, msgs, run_id, parent_run_id, tags, metadata, kwargs
            )
        except _PROPAGATE:
            raise
        except Exception:
            _log_internal_error()

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._end(response, run_id)
        except BudgetExceededError:
            raise
        except Exception:
            _log_internal_error()

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._error(error, run_id, kwargs)
        except BudgetExceededError:
            raise
        except Exception:
            _log_internal_error()

    async def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        with swallow_internal_errors():
            self._tool_start(serialized, run_id, kwargs)

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with swallow_internal_errors():
            self._tool_end(run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with swallow_internal_errors():
            self._tool_end(run_id)


# One ContextVar registered once: LangChain's configure() adds the handler it holds to
# every callback manager created inside a `tracking()` block (sync, async, threads
# started by LangChain's executors, nested chains, agents and tools).
_tracking_handler: ContextVar[TokenwardCallbackHandler | None] = ContextVar(
    "tokenward_tracking_handler", default=None
)
register_configure_hook(_tracking_handler, inheritable=True)


@contextmanager
def tracking(
    accountant: Accountant | None = None,
    *,
    default_model: str | None = None,
    **dims: Any,
) -> Iterator[Tracker]:
    """Account every LangChain model call made inside the block; yields live totals.

    ::

        with tracking(accountant, user_id="u1") as t:
            chain.invoke(...)          # any depth: chains, agents, tools, threads
        print(t.calls, t.usage.total, t.cost)

    One :class:`TokenwardCallbackHandler` is attached to every run started in the
    block, however deeply nested (LangChain's ``register_configure_hook``, the
    mechanism behind ``get_usage_metadata_callback``), and ``accountant.track(**dims)``
    is entered, so the dimensions also apply to calls accounted by other adapters
    (e.g. :class:`TokenBudgetMiddleware`). Run metadata still overrides them. Nested
    blocks inherit the outer accountant and dimensions; only the innermost handler is
    attached, so nothing is counted twice, and outer trackers include inner calls.

    Yields the accountant's :class:`~tokenward.accountant.Tracker` (``calls``,
    ``errors``, ``usage``, ``cost``, ``estimated``, ``events``).
    """
    outer = _tracking_handler.get()
    given = {k: v for k, v in dims.items() if v is not None}
    if outer is not None:
        merged = {**outer.dims, **given}
        if outer.dims.get("tags") and given.get("tags"):
            merged["tags"] = {**outer.dims["tags"], **given["tags"]}
        acc = accountant if accountant is not None else outer.accountant
        default_model = default_model or outer.default_model
    else:
        merged = given
        acc = accountant if accountant is not None else _default_accountant()
    handler = TokenwardCallbackHandler(acc, default_model=default_model, **merged)
    tracker = acc.track(**given)
    token = _tracking_handler.set(handler)
    try:
        with tracker:
            yield tracker
    finally:
        _tracking_handler.reset(token)
