"""Keep a long chat inside a token budget with HistoryTrimmer (drop-in for trim_messages).

A support bot keeps the full conversation (with tool calls) and sends the model only
what fits in 400 tokens: the system prompt, whole tool-call groups, starting on a user
turn. The same conversation is replayed without trimming to show what it saves.

Runs offline: LangChain's GenericFakeChatModel reports no token usage, so tokenward
counts the prompt and the reply itself (events are marked estimated).

    python examples/langchain_memory_trimmer.py
"""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from tokenward.accountant import Accountant
from tokenward.langchain import HistoryTrimmer, TokenwardCallbackHandler

SYSTEM = "You are the support assistant of ACME Cloud. Answer briefly and politely."


def replies() -> list[str]:
    return [
        f"Here is what I found about your issue number {i}: restart the service, then "
        f"check the status page; it should be fixed within ten minutes."
        for i in range(40)
    ]


def conversation_turns() -> list[str]:
    return [
        f"Turn {i}: my deployment {i % 5} fails with error code {500 + i}, what should I do?"
        for i in range(24)
    ]


def run(trim: bool) -> tuple[Accountant, list[BaseMessage], list[int]]:
    accountant = Accountant()
    model = GenericFakeChatModel(messages=iter(replies()))
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    trimmer = HistoryTrimmer(max_tokens=400, model="gpt-5.4-mini")
    chain = (prompt | trimmer | model) if trim else (prompt | model)
    handler = TokenwardCallbackHandler(
        accountant, default_model="gpt-5.4-mini", user_id="dana", conversation_id="ticket-42"
    )
    history: list[BaseMessage] = []
    sent: list[int] = []
    for i, question in enumerate(conversation_turns()):
        answer = chain.invoke(
            {"history": history, "question": question}, config={"callbacks": [handler]}
        )
        history += [HumanMessage(question, id=f"q{i}"), answer]
        if i % 6 == 5:  # now and then the bot looked something up with a tool
            history += [
                AIMessage(
                    "",
                    id=f"tc{i}",
                    tool_calls=[
                        {
                            "name": "status_page",
                            "args": {"service": f"deploy-{i % 5}"},
                            "id": f"c{i}",
                        }
                    ],
                ),
                ToolMessage(f"deploy-{i % 5}: degraded since 10:0{i % 10}", tool_call_id=f"c{i}"),
            ]
        accountant.flush()
        sent.append(list(accountant.ledger.events())[-1].usage.input)
    return accountant, history, sent


def main() -> None:
    trimmed, history, sent = run(trim=True)
    full, _, sent_full = run(trim=False)

    trimmer = HistoryTrimmer(max_tokens=400, model="gpt-5.4-mini")
    kept = trimmer.invoke(history)
    print(f"history: {len(history)} messages; trimmed to 400 tokens it keeps {len(kept)}:")
    print("  " + " ".join(type(m).__name__.replace("Message", "") for m in kept))
    tool_groups_whole = all(
        not isinstance(m, ToolMessage)
        or (j > 0 and isinstance(kept[j - 1], (AIMessage, ToolMessage)))
        for j, m in enumerate(kept)
    )
    print(f"  every tool result kept with its tool call: {tool_groups_whole}")
    print()
    print("turn  prompt tokens (trimmed)  prompt tokens (full history)")
    for turn in (0, 5, 11, 17, 23):
        print(f"{turn:>4}  {sent[turn]:>23}  {sent_full[turn]:>28}")
    print()
    for name, acc in (("trimmed", trimmed), ("full history", full)):
        [row] = acc.ledger.summary(by=["user_id"])
        print(
            f"{name:<13} user={row.dims['user_id']} calls={row.calls} input={row.input} "
            f"output={row.output} cost=${row.cost:.7f} estimated_events={row.estimated}"
        )
    [t] = trimmed.ledger.summary()
    [f] = full.ledger.summary()
    print(f"trimming saved {100 * (f.input - t.input) / f.input:.0f}% of input tokens")


if __name__ == "__main__":
    main()
