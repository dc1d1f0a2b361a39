"""A LangChain v1 agent (create_agent) with a per-user daily budget in USD.

TokenBudgetMiddleware pre-flights every model call of the agent loop: while the
budget has room the agent runs on gpt-5.4; when gpt-5.4's estimate no longer fits it
first lowers max_tokens, then falls back to gpt-5.4-nano, and when nothing fits the
call is refused before the model runs. Per-thread totals live in the agent state.

Runs offline: the models are LangChain's GenericFakeChatModel scripted with tool
calls, reporting usage like a provider does.

    python examples/langchain_agent_budget.py
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.errors import BudgetExceededError
from tokenward.langchain import TokenBudgetMiddleware


class ToolCallingFake(GenericFakeChatModel):
    """Scripted tool-calling model reporting usage (600 prompt, 150 output tokens)."""

    model_name: str = "gpt-5.4"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        msg = result.generations[0].message
        msg.usage_metadata = {"input_tokens": 600, "output_tokens": 150, "total_tokens": 750}
        msg.response_metadata = {"model_name": self.model_name}
        return result


def script(tag: str) -> Iterator[AIMessage]:
    for i in range(100):
        yield AIMessage(
            "",
            tool_calls=[
                {"name": "lookup_order", "args": {"order_id": f"A{i}"}, "id": f"{tag}-{i}"}
            ],
        )
        yield AIMessage("It ships tomorrow.")


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order's shipping status."""
    return f"order {order_id}: packed, ships tomorrow"


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="alert: %(message)s", stream=sys.stdout)
    budgets = Budgets(Budget("daily-per-user", limit_usd="0.07", window="day", scope="user_id"))
    accountant = Accountant(budgets=budgets)
    big = ToolCallingFake(messages=script("big"), model_name="gpt-5.4")
    small = ToolCallingFake(messages=script("small"), model_name="gpt-5.4-nano")
    agent = create_agent(
        big,
        tools=[lookup_order],
        middleware=[TokenBudgetMiddleware(accountant, fallback_model=small, agent="orders-bot")],
        checkpointer=InMemorySaver(),
    )

    for task in range(20):
        config = {"configurable": {"thread_id": f"grace-{task}"}, "metadata": {"user_id": "grace"}}
        try:
            state = agent.invoke({"messages": [HumanMessage(f"Where is order A{task}?")]}, config)
        except BudgetExceededError as exc:
            print(
                f"task {task}: refused before calling a model: {exc.budget} "
                f"spent ${exc.spent} of ${exc.limit}"
            )
            break
        totals, answer = state["tokenward"], state["messages"][-1]
        print(
            f"task {task}: {answer.response_metadata['model_name']:<11} "
            f"{totals['calls']} calls, {totals['fallbacks']} degraded, "
            f"${float(totals['cost_usd']):.5f} -> {answer.content}"
        )
    state = agent.invoke(
        {"messages": [HumanMessage("Where is order B1?")]},
        {"configurable": {"thread_id": "henry-0"}, "metadata": {"user_id": "henry"}},
    )
    print(
        f"henry (own budget): {state['tokenward']['calls']} calls, "
        f"${float(state['tokenward']['cost_usd']):.5f}"
    )

    accountant.flush()
    print()
    print(f"{'user':<7} {'model':<12} {'calls':>5} {'tools':>5} {'cost (USD)':>11}")
    for row in accountant.ledger.summary(by=["user_id", "model"]):
        print(
            f"{row.dims['user_id']:<7} {row.dims['model']:<12} {row.calls:>5} "
            f"{row.tool_calls:>5} {row.cost:>11.6f}"
        )
    status = budgets.status("daily-per-user", user_id="grace")
    print(
        f"grace: spent ${status.spent} of ${status.limit} "
        f"({100 * status.utilization:.0f}%), resets {status.reset_at:%Y-%m-%d %H:%M} UTC"
    )


if __name__ == "__main__":
    main()
