"""Cost per user of an LCEL chain, with a hard daily budget: LangChain in three lines.

Runs offline: the chat model is LangChain's GenericFakeChatModel, taught to report
token usage the way provider integrations (ChatOpenAI, ChatAnthropic...) do.

    python examples/langchain_chain_costs.py
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.prompts import ChatPromptTemplate

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.errors import BudgetExceededError
from tokenward.langchain import TokenwardCallbackHandler, tracking


class FakeOpenAI(GenericFakeChatModel):
    """Replies from a script and reports usage like a provider (1 token per word here)."""

    model_name: str = "gpt-5.4-mini"

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        msg = result.generations[0].message
        prompt_words = sum(len(str(m.content).split()) for m in messages) + 3 * len(messages)
        out_words = len(str(msg.content).split())
        msg.usage_metadata = {
            "input_tokens": prompt_words,
            "output_tokens": out_words,
            "total_tokens": prompt_words + out_words,
        }
        msg.response_metadata = {"model_name": self.model_name}
        return result


def main() -> None:
    # budget alerts (50/75/90 %) are logged: show them inline
    logging.basicConfig(level=logging.WARNING, format="alert: %(message)s", stream=sys.stdout)

    # one accountant for the app: in-memory ledger here (pass ledger="usage.db" for SQLite)
    accountant = Accountant(
        budgets=Budgets(
            Budget("daily-per-user", limit_tokens=120, window="day", scope="user_id"),
        )
    )

    answers = iter(["Paris is the capital of France."] * 100)
    model = FakeOpenAI(messages=answers).bind(max_tokens=20)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer geography questions in one sentence."), ("human", "{question}")]
    )
    chain = prompt | model

    # 1) per call: the handler plus run metadata
    handler = TokenwardCallbackHandler(accountant)
    for user, question in [
        ("alice", "Capital of France?"),
        ("bob", "Capital of France, again?"),
        ("alice", "And the capital of Italy?"),
    ]:
        chain.invoke(
            {"question": question}, config={"callbacks": [handler], "metadata": {"user_id": user}}
        )

    # 2) for a whole block: every LangChain call inside is accounted, with live totals
    with tracking(accountant, user_id="carol", tags={"feature": "batch-quiz"}) as totals:
        chain.batch(
            [{"question": f"Question {i}?"} for i in range(3)], config={"max_concurrency": 2}
        )
    print(
        f"carol's block: {totals.calls} calls, {totals.usage.total} tokens, "
        f"${totals.cost} (estimated: {totals.estimated})"
    )

    # 3) a hard budget stops the call before the model runs
    denied = 0
    for i in range(10):
        try:
            chain.invoke(
                {"question": f"Alice question {i}?"},
                config={"callbacks": [handler], "metadata": {"user_id": "alice"}},
            )
        except BudgetExceededError as exc:
            denied += 1
            if denied == 1:
                print(
                    f"denied: budget={exc.budget} scope={exc.scope_key} "
                    f"spent={exc.spent} limit={exc.limit}"
                )
    print(f"alice: {denied} calls denied before reaching the model")

    accountant.flush()
    print()
    print(f"{'user':<8} {'calls':>5} {'input':>6} {'output':>6} {'cost (USD)':>12}")
    for row in accountant.ledger.summary(by=["user_id"]):
        print(
            f"{row.dims['user_id']:<8} {row.calls:>5} {row.input:>6} {row.output:>6} "
            f"{row.cost:>12.7f}"
        )
    [total] = accountant.ledger.summary()
    print(f"{'total':<8} {total.calls:>5} {total.input:>6} {total.output:>6} {total.cost:>12.7f}")


if __name__ == "__main__":
    main()
