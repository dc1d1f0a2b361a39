"""Token/money budgets, history trimming and cheaper-model fallback for ``create_agent``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from tokenward.errors import BudgetExceededError, IntegrationUnavailableError

try:
    from langchain.agents.middleware.types import (
        AgentMiddleware,
        AgentState,
        ExtendedModelResponse,
        ModelRequest,
        ModelResponse,
    )
except ImportError:  # pragma: no cover - only without langchain>=1
    raise IntegrationUnavailableError("langchain>=1.0", "langchain") from None

from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.types import Command
from typing_extensions import NotRequired

from tokenward.integrations._common import guard
from tokenward.integrations.langchain._callbacks import _accounted_elsewhere
from tokenward.integrations.langchain._common import (
    dims_from_run,
    extract_result,
    logger,
    max_output_from_params,
    swallow_internal_errors,
)
from tokenward.integrations.langchain._convert import messages_for_preflight

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.runtime import Runtime

    from tokenward.accountant import Accountant
    from tokenward.context import AddCheck, CacheAwareTrim, CacheRules, WindowStatus
    from tokenward.integrations.langchain._trimmer import HistoryTrimmer

__all__ = ["TokenBudgetMiddleware", "TokenBudgetState", "model_name_of"]

_TOTAL_INTS = ("calls", "input_tokens", "output_tokens", "fallbacks")


def _add_totals(left: Mapping[str, Any] | None, right: Mapping[str, Any] | None) -> dict[str, Any]:
    """State reducer: add one call's totals to the thread's running totals."""
    if not left:
        return dict(right or {})
    if not right:
        return dict(left)
    out: dict[str, Any] = {k: int(left.get(k, 0)) + int(right.get(k, 0)) for k in _TOTAL_INTS}
    out["cost_usd"] = str(
        Decimal(str(left.get("cost_usd", "0"))) + Decimal(str(right.get("cost_usd", "0")))
    )
    out["estimated"] = bool(left.get("estimated")) or bool(right.get("estimated"))
    return out


class TokenBudgetState(AgentState[Any]):
    """Agent state with ``tokenward``: this thread's running totals.

    ``{"calls", "input_tokens", "output_tokens", "fallbacks", "cost_usd" (str Decimal),
    "estimated"}``; persisted per ``thread_id`` by the agent's checkpointer.
    """

    tokenward: NotRequired[Annotated[dict[str, Any], _add_totals]]


def model_name_of(model: Any) -> str | None:
    """Best-effort catalog name of a chat model object (LangSmith's ``ls_model_name`` first)."""
    try:
        name = model._get_ls_params().get("ls_model_name")
    except Exception:  # noqa: BLE001  # any chat model object; the attributes below are the rest
        name = None
    if name:
        return str(name)
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _cache_aware_trimmer(
    trimmer: HistoryTrimmer | None, cache_aware: Any, low_water: float | int | None
) -> HistoryTrimmer:
    """``trimmer`` with the middleware's ``cache_aware`` option (a copy: states per thread)."""
    from tokenward.errors import ConfigurationError

    if trimmer is None:
        raise ConfigurationError(
            "cache_aware needs a trimmer for the budget: TokenBudgetMiddleware("
            "trimmer=HistoryTrimmer(16_000, model=...), cache_aware=True)"
        )
    if trimmer.cache_aware is not None and trimmer.cache_aware is not False:
        raise ConfigurationError(
            "the trimmer already has cache_aware=...; set it on the trimmer or the middleware"
        )
    if low_water is None:
        return trimmer.with_cache_aware(cache_aware)
    return trimmer.with_cache_aware(cache_aware, low_water=low_water)


def _thread_config() -> RunnableConfig | None:
    """A run config naming only the current LangGraph thread (for the trimmer's state)."""
    thread = (_run_config().get("configurable") or {}).get("thread_id")
    return None if thread is None else RunnableConfig(configurable={"thread_id": thread})


def _run_config() -> dict[str, Any]:
    try:
        from langgraph.config import get_config

        return dict(get_config())
    except RuntimeError:  # outside a graph run
        return {}


class TokenBudgetMiddleware(AgentMiddleware[TokenBudgetState, Any, Any]):
    """Budgets, accounting, trimming and fallback for agents built with ``create_agent``.

    * trimming: with a ``trimmer``, every model call sees the trimmed history while the
      agent's state (and its checkpoint) keeps every message. With ``trim_state=True``
      the state itself is trimmed in ``before_model`` instead (the dropped messages are
      removed from the checkpoint, as LangChain's ``SummarizationMiddleware`` does).
    * ``wrap_model_call``: pre-flight (exact prompt count incl. tools, reservation on
      every budget) through the Accountant, then the model call, then ``settle``
      with the reported usage. A hard budget that denies raises
      :class:`~tokenward.BudgetExceededError` before the model runs, unless the call
      can be degraded to fit (``degrade=True``, using ``tokenward.budgets``'
      ``suggest_degradation``): first a lower ``max_tokens`` on the same model (not
      below ``min_output_tokens``), then the cheaper ``fallback_model``. The degraded
      call is pre-flighted again, so the decision stays atomic. With ``degrade_at``
      (a utilization such as ``0.9``) the fallback is used as soon as any budget that
      applies is that full.
    * each call adds to ``state["tokenward"]`` (``fallbacks`` counts degraded calls) (see :class:`TokenBudgetState`), so
      per-thread totals are kept with the conversation.

    Calls accounted here are skipped by a :class:`TokenwardCallbackHandler` active
    at the same time (e.g. inside :func:`tracking`), so nothing is counted twice.

    Args:
        accountant: the Accountant (default: ``get_default_accountant()``).
        trimmer: a :class:`HistoryTrimmer` for the messages each model call sees (the
            system prompt is separate and not trimmed); ``None`` = no trimming.
        trim_state: trim the stored conversation instead of the model request: the
            dropped messages are deleted from the state and its checkpoint.
        cache_aware: keep the provider's prompt cache warm: the trim point holds per
            LangGraph thread (the run config's ``thread_id``) until the history from it
            no longer fits the trimmer's budget, then moves once, back to ``low_water``
            (see :class:`HistoryTrimmer`: ``True``, ``"anthropic"``, ``"openai"``, a
            ``CacheRules``; or set it on the trimmer itself). With ``trim_state=True``
            the checkpoint is rewritten only at those cuts. :meth:`cache_state` gives a
            thread's state (its ``breakpoints`` index the trimmed ``request.messages``).
        low_water: where a cut goes back to (fraction of the budget or tokens; 0.6).
        fallback_model: a cheaper chat model used when the budget denies (or is near).
        model_name / fallback_model_name: catalog names when the model objects do not
            tell (default: read from the model object).
        degrade_at: switch to the fallback when a budget's utilization reaches this.
        max_output_tokens: output tokens to reserve (default: the call's ``max_tokens``
            setting, else the Accountant's default).
        **dims: default dimensions; run metadata (``user_id``...) and the
            ``thread_id`` (as ``conversation_id``) override them.
    """

    state_schema = TokenBudgetState

    def __init__(
        self,
        accountant: Accountant | None = None,
        *,
        trimmer: HistoryTrimmer | None = None,
        trim_state: bool = False,
        cache_aware: bool | str | CacheRules | None = None,
        low_water: float | int | None = None,
        fallback_model: BaseChatModel | None = None,
        model_name: str | None = None,
        fallback_model_name: str | None = None,
        degrade_at: float | None = None,
        degrade: bool = True,
        min_output_tokens: int = 256,
        max_output_tokens: int | None = None,
        **dims: Any,
    ) -> None:
        super().__init__()
        if accountant is None:
            from tokenward.accountant import get_default_accountant

            accountant = get_default_accountant()
        self.accountant = accountant
        if cache_aware is not None and cache_aware is not False:
            trimmer = _cache_aware_trimmer(trimmer, cache_aware, low_water)
        elif low_water is not None:
            from tokenward.errors import ConfigurationError

            raise ConfigurationError("low_water is used with cache_aware=...; pass both")
        self.trimmer = trimmer
        self.trim_state = trim_state
        self.fallback_model = fallback_model
        self.model_name = model_name
        self.fallback_model_name = fallback_model_name or (
            model_name_of(fallback_model) if fallback_model is not None else None
        )
        if fallback_model is not None and not self.fallback_model_name:
            from tokenward.errors import ConfigurationError

            raise ConfigurationError(
                "cannot tell the fallback model's catalog name; pass fallback_model_name='...'"
            )
        self.degrade_at = degrade_at
        self.degrade = degrade
        self.min_output_tokens = min_output_tokens
        self.max_output_tokens = max_output_tokens
        self.dims = {k: v for k, v in dims.items() if v is not None}

    # -- trimming ---------------------------------------------------------------------------
    def before_model(self, state: TokenBudgetState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """With ``trim_state=True``: replace the stored conversation by the kept messages."""
        if self.trimmer is None or not self.trim_state:
            return None
        messages: list[BaseMessage] = list(state.get("messages") or [])
        kept = self.trimmer.invoke(messages, _thread_config())
        if len(kept) == len(messages) and all(a is b for a, b in zip(kept, messages)):
            return None
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]}

    async def abefore_model(
        self, state: TokenBudgetState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    def _trimmed(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """The request with its messages trimmed (the state is left as it is)."""
        if self.trimmer is None or self.trim_state:
            return request
        messages = list(request.messages)
        kept = self.trimmer.invoke(messages, _thread_config())
        if len(kept) == len(messages) and all(a is b for a, b in zip(kept, messages)):
            return request
        return request.override(messages=kept)

    def cache_state(self, thread_id: Any = None) -> CacheAwareTrim | None:
        """The cache-aware trim state of a LangGraph thread (None without ``cache_aware`` or
        before the thread's first model call): ``held``, ``cuts``, ``breakpoints``."""
        if self.trimmer is None:
            return None
        return self.trimmer.cache_state(thread_id)

    # -- wrap_model_call: budgets + accounting ---------------------------------------------
    def _dims(self) -> dict[str, Any]:
        config = _run_config()
        metadata = dict(config.get("metadata") or {})
        thread = (config.get("configurable") or {}).get("thread_id")
        if thread is not None and "thread_id" not in metadata:
            metadata["thread_id"] = thread
        return dims_from_run(self.dims, metadata, None)

    def _prompt(self, request: ModelRequest[Any]) -> tuple[list[Any], list[Any] | None]:
        msgs: list[BaseMessage] = []
        if request.system_message is not None:
            msgs.append(request.system_message)
        msgs.extend(request.messages)
        tools = [convert_to_openai_tool(t) for t in request.tools] or None
        return messages_for_preflight([msgs]), tools

    def _near_limit(self, dims: Mapping[str, Any]) -> bool:
        if self.degrade_at is None or self.fallback_model is None:
            return False
        budgets = getattr(self.accountant, "budgets", None)
        if budgets is None:
            return False
        with swallow_internal_errors():
            return bool(_utilization(budgets, dims) >= self.degrade_at)
        return False

    def _suggest(
        self,
        model: str,
        messages: list[Any],
        tools: list[Any] | None,
        max_out: int | None,
        dims: Mapping[str, Any],
    ) -> Any:
        """The budgets' degradation helper: lower max output tokens, or the fallback model."""
        budgets = getattr(self.accountant, "budgets", None)
        if budgets is None or not self.degrade:
            return None
        from tokenward.budgets import suggest_degradation
        from tokenward.cost import cost
        from tokenward.counting import get_counter
        from tokenward.usage import Usage

        catalog = self.accountant.catalog
        info = catalog.get(model)
        prompt_tokens = get_counter(info.name, catalog=catalog).count_messages(
            messages, tools=tools
        )
        if max_out is None:
            max_out = self.accountant.expected_output_tokens
            if info.max_output:
                max_out = min(max_out, info.max_output)
        flat = {k: v for k, v in dims.items() if k != "tags"}
        budget_dims = {
            **(dims.get("tags") or {}),
            **flat,
            "model": model,
            "provider": info.provider,
        }
        return suggest_degradation(
            budgets,
            budget_dims,
            model=model,
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_out,
            price=lambda m, i, o: cost(Usage(input=i, output=o), m, catalog=catalog).total,
            ladder=[self.fallback_model_name] if self.fallback_model_name else [],
            min_output_tokens=self.min_output_tokens,
        )

    def _fallback(self) -> BaseChatModel:
        if self.fallback_model is None:  # the degradation ladder only names a configured one
            raise ValueError("no fallback_model configured")
        return self.fallback_model

    def _plan(self, request: ModelRequest[Any], run_id: str) -> tuple[ModelRequest[Any], str, bool]:
        """Preflight; returns the request to run (maybe degraded), its model, degraded?"""
        dims = self._dims()
        messages, tools = self._prompt(request)
        primary = self.model_name or model_name_of(request.model)
        if primary is None:
            raise ValueError("cannot tell the agent model's catalog name; pass model_name=...")
        max_out = self.max_output_tokens or max_output_from_params(request.model_settings)

        def preflight(model: str, out: int | None) -> None:
            self.accountant.preflight(
                run_id, model, messages=messages, tools=tools, max_output_tokens=out, dims=dims
            )

        if self.fallback_model is not None and self._near_limit(dims):
            preflight(self.fallback_model_name, max_out)  # type: ignore[arg-type]
            return request.override(model=self._fallback()), self.fallback_model_name, True  # type: ignore[return-value]
        try:
            preflight(primary, max_out)
            return request, primary, False
        except BudgetExceededError as denied:
            suggestion = None
            with swallow_internal_errors():
                suggestion = self._suggest(primary, messages, tools, max_out, dims)
            if suggestion is None or suggestion.action == "none":
                if self.fallback_model is None:
                    raise
                suggestion = None
            logger.info(
                "tokenward: %s; degrading: %s",
                denied,
                suggestion.reason if suggestion else f"fallback {self.fallback_model_name}",
            )
            if suggestion is None:  # no helper answer: try the fallback as is
                preflight(self.fallback_model_name, max_out)  # type: ignore[arg-type]
                return request.override(model=self._fallback()), self.fallback_model_name, True  # type: ignore[return-value]
            out = suggestion.max_output_tokens
            settings = {**request.model_settings, "max_tokens": out}
            if suggestion.action == "model":
                preflight(suggestion.model, out)  # still atomic: may raise again
                return (
                    request.override(model=self._fallback(), model_settings=settings),
                    suggestion.model,
                    True,
                )
            preflight(primary, out)
            return request.override(model_settings=settings), primary, True

    def _settle(
        self, run_id: str, model: str | None, response: ModelResponse[Any], fallback: bool
    ) -> Command[Any] | None:
        ais = [m for m in response.result if isinstance(m, AIMessage)]
        info = extract_result(LLMResult(generations=[[ChatGeneration(message=m)] for m in ais]))
        event = self.accountant.settle(
            run_id,
            info.usage,
            model=info.model or model,
            output_text=info.output_text if info.usage is None else None,
            tool_names=tuple(info.tool_names),
        )
        if event is None:
            return None
        totals = {
            "calls": 1,
            "input_tokens": event.usage.input,
            "output_tokens": event.usage.output,
            "fallbacks": int(fallback),
            "cost_usd": str(event.cost if event.cost is not None else 0),
            "estimated": bool(event.estimated),
        }
        return Command(update={"tokenward": totals})

    def _begin(self, request: ModelRequest[Any]) -> tuple[str, ModelRequest[Any], str | None, bool]:
        """Preflight (may raise a denial); on an internal error the call runs as asked."""
        run_id = uuid.uuid4().hex
        with guard(logger, "middleware preflight"):
            return (run_id, *self._plan(request, run_id))
        return run_id, request, self.model_name or model_name_of(request.model), False

    def _end(
        self, run_id: str, model: str | None, response: ModelResponse[Any], fallback: bool
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        command = None
        with guard(
            logger, "middleware settle", fallback=partial(self.accountant.settle, run_id, None)
        ):
            command = self._settle(run_id, model, response, fallback)
        if command is None:
            return response
        return ExtendedModelResponse(model_response=response, command=command)

    def _failed(self, run_id: str, exc: BaseException) -> None:
        with guard(logger, "middleware release"):
            self.accountant.release(run_id, error=exc)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        request = self._trimmed(request)
        run_id, actual, model, fallback = self._begin(request)
        token = _accounted_elsewhere.set(True)
        try:
            response = handler(actual)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        finally:
            _accounted_elsewhere.reset(token)
        return self._end(run_id, model, response, fallback)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        request = self._trimmed(request)
        run_id, actual, model, fallback = self._begin(request)
        token = _accounted_elsewhere.set(True)
        try:
            response = await handler(actual)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        finally:
            _accounted_elsewhere.reset(token)
        return self._end(run_id, model, response, fallback)

    # -- context limits (tokenward.context) ------------------------------------------------
    def _limit_args(
        self, state: Mapping[str, Any] | list[BaseMessage], model: str | None
    ) -> tuple[list[Any], str]:
        messages = state if isinstance(state, list) else list(state.get("messages") or [])
        name = model or self.model_name
        if name is None:
            from tokenward.errors import ConfigurationError

            raise ConfigurationError(
                "no model to read a context window from; pass model='...' or build the "
                "middleware with model_name='...'"
            )
        return messages_for_preflight([messages]), name

    def window_status(
        self, state: Mapping[str, Any] | list[BaseMessage], model: str | None = None
    ) -> WindowStatus:
        """How full the model's context window is with the agent state's messages (or a
        message list): :func:`tokenward.context.window_status`."""
        from tokenward.context import window_status

        messages, name = self._limit_args(state, model)
        return window_status(messages, name, catalog=self.accountant.catalog)

    def can_add(
        self,
        state: Mapping[str, Any] | list[BaseMessage],
        message: BaseMessage,
        model: str | None = None,
    ) -> AddCheck:
        """Whether ``message`` still fits after the state's messages, with the cheapest remedy
        when it does not: :func:`tokenward.context.can_add`."""
        from tokenward.context import can_add

        messages, name = self._limit_args(state, model)
        (new,) = messages_for_preflight([[message]])
        return can_add(messages, new, name, catalog=self.accountant.catalog)


def _utilization(budgets: Any, dims: Mapping[str, Any]) -> float:
    """Highest utilization among the budgets that apply to ``dims`` (0.0 if none)."""
    helper = getattr(budgets, "max_utilization", None)
    if callable(helper):
        return float(helper(dims))
    worst = 0.0
    flat = {k: v for k, v in dims.items() if k != "tags"}
    for budget in getattr(budgets, "budgets", ()) or ():
        status = budgets.status(budget.name, **flat)
        worst = max(worst, float(getattr(status, "utilization", 0) or 0))
    return worst
