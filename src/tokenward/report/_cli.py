"""Command bodies behind ``tokenward report --format html`` and ``tokenward budget show|set``.

``tokenward.cli`` parses the arguments and calls these functions; they raise
``ConfigurationError`` / ``FileNotFoundError`` for problems the user can fix (exit code 2).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tokenward.errors import ConfigurationError

__all__ = ["DEFAULT_BUDGETS_FILE", "budget_set", "budget_show", "report_data_builder"]

#: Where ``tokenward budget`` reads and writes definitions unless ``--config`` says otherwise.
DEFAULT_BUDGETS_FILE = "budgets.toml"


def _store_url(explicit: str | None, config: Any) -> str | None:
    return (
        explicit
        or (config.store if config is not None else None)
        or os.environ.get("TOKENWARD_BUDGET_STORE")
    )


def report_data_builder(budgets_file: str | None, budget_store: str | None) -> Callable[..., Any]:
    """A ``build_report_data`` with the budgets of ``budgets_file`` (live from ``budget_store``
    or the file's ``[store] url`` when set; otherwise recomputed from the ledger).

    The file is read and validated now, so a bad file fails before the ledger is opened.
    """
    from tokenward._budget_config import load_budget_config, open_budget_store
    from tokenward.report._data import build_report_data

    if not budgets_file:
        if budget_store:
            raise ConfigurationError("--budget-store needs --budgets FILE (the budget definitions)")
        return build_report_data
    cfg = load_budget_config(budgets_file)
    budgets = cfg.build()
    url = budget_store or cfg.store

    def build(ledger: Any, **kwargs: Any) -> Any:
        store = open_budget_store(url) if url else None
        try:
            return build_report_data(ledger, budgets=budgets, budget_store=store, **kwargs)
        finally:
            if store is not None:
                store.close()

    return build


def _amount(value: Any, unit: str) -> str:
    if unit == "usd":
        from tokenward.report._html import usd

        return usd(Decimal(value))
    return f"{int(value):,}"


def budget_show(
    *,
    config_path: str | None,
    store_url: str | None,
    users: Sequence[str] = (),
    dims: Mapping[str, str] | None = None,
    names: Sequence[str] = (),
    fmt: str = "table",
    now: datetime | None = None,
    out: Any = None,
) -> list[dict[str, Any]]:
    """Print live status (spent, reserved, remaining, utilization, reset time) of each budget
    in the definitions file, for each ``--user`` (or the ``dims`` given). Returns the rows."""
    from tokenward._budget_config import load_budget_config, open_budget_store
    from tokenward.budgets import Budgets

    path = config_path or DEFAULT_BUDGETS_FILE
    if not os.path.exists(path):
        raise ConfigurationError(
            f"no budgets file at {path}; create one with "
            f"`tokenward budget set NAME --limit-usd 5 --window day --scope user_id "
            f"--config {path}`"
        )
    cfg = load_budget_config(path)
    defs = cfg.build()
    if names:
        unknown = sorted(set(names) - {b.name for b in defs})
        if unknown:
            raise ConfigurationError(
                f"no budget named {', '.join(unknown)} in {path}; known: "
                f"{', '.join(b.name for b in defs) or 'none'}"
            )
        defs = [b for b in defs if b.name in names]
    url = _store_url(store_url, cfg)
    if not url:
        raise ConfigurationError(
            f"no budget store: pass --store PATH_OR_URL (the SQLite file, postgresql:// or "
            f"redis:// URL your app's Budgets use), set [store] url in {path}, or "
            f"TOKENWARD_BUDGET_STORE"
        )
    store = open_budget_store(url)
    rows: list[dict[str, Any]] = []
    now = now or datetime.now(timezone.utc)
    try:
        budgets = Budgets(*defs, store=store)
        base_dims: dict[str, Any] = dict(dims or {})
        selections = [{**base_dims, "user_id": u} for u in users] or [base_dims]
        for b in defs:
            for sel in selections:
                missing = [d for d in b.scope if d not in sel]
                if missing:
                    rows.append(
                        {
                            "budget": b.name,
                            "scope": None,
                            "unit": b.unit,
                            "mode": b.mode,
                            "window": b.window.describe(),
                            "note": "scoped by "
                            + ", ".join(missing)
                            + ": pass "
                            + " ".join(
                                "--user ID" if d == "user_id" else f"--dim {d}=VALUE"
                                for d in missing
                            ),
                        }
                    )
                    continue
                call_dims = dict(sel)
                for key, values in b.where.items():  # make the budget apply to this selection
                    call_dims.setdefault(key, min(values))
                st = budgets.status(b.name, now=now, **call_dims)
                rows.append(
                    {
                        "budget": st.budget,
                        "scope": st.scope_key,
                        "unit": st.unit,
                        "mode": st.mode,
                        "window": st.window,
                        "limit": st.limit,
                        "spent": st.spent,
                        "reserved": st.reserved,
                        "remaining": st.remaining,
                        "utilization": st.utilization,
                        "near_limit": st.near_limit,
                        "calls": st.calls,
                        "reset_at": st.reset_at.isoformat() if st.reset_at else None,
                    }
                )
    finally:
        store.close()
    stream = out or sys.stdout
    if fmt == "json":
        stream.write(
            json.dumps(
                [
                    {k: (str(v) if isinstance(v, Decimal) else v) for k, v in r.items()}
                    for r in rows
                ],
                indent=2,
            )
            + "\n"
        )
        return rows
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Budgets ({path}, store {url})", title_justify="left")
    for col, j in (
        ("budget", "left"),
        ("scope", "left"),
        ("mode", "left"),
        ("window", "left"),
        ("spent", "right"),
        ("reserved", "right"),
        ("remaining", "right"),
        ("limit", "right"),
        ("used", "right"),
        ("resets (UTC)", "left"),
    ):
        table.add_column(col, justify=j)  # type: ignore[arg-type]
    for r in rows:
        if r.get("scope") is None:
            table.add_row(r["budget"], r["note"], r["mode"], r["window"], "", "", "", "", "", "")
            continue
        unit = r["unit"]
        used = f"{r['utilization'] * 100:.1f}%" + (" !" if r["near_limit"] else "")
        reset = r["reset_at"][:16].replace("T", " ") if r["reset_at"] else "-"
        table.add_row(
            r["budget"],
            r["scope"],
            r["mode"],
            r["window"],
            _amount(r["spent"], unit),
            _amount(r["reserved"], unit),
            _amount(r["remaining"], unit),
            _amount(r["limit"], unit),
            used,
            reset,
        )
    width = None
    if not (hasattr(stream, "isatty") and stream.isatty()):
        try:
            width = int(os.environ.get("COLUMNS", "140"))
        except ValueError:
            width = 140
    console = Console(file=stream, width=width, highlight=False, soft_wrap=False)
    console.print(table)
    return rows


def budget_set(
    name: str,
    *,
    config_path: str | None,
    limit_usd: str | None,
    limit_tokens: int | None,
    window: str,
    scope: str | None,
    mode: str,
    thresholds: Sequence[float] | None,
    timezone_name: str | None,
    where: Mapping[str, str] | None,
    store_url: str | None,
) -> tuple[str, bool]:
    """Add or replace the definition ``name`` in the budgets file (validated via ``Budget``).
    Returns ``(path, created)``; ``created`` is False when an existing budget was replaced."""
    from tokenward._budget_config import (
        BudgetConfig,
        definition_from_args,
        load_budget_config,
        save_budget_config,
    )

    path = config_path or DEFAULT_BUDGETS_FILE
    cfg = load_budget_config(path) if os.path.exists(path) else BudgetConfig()
    if limit_usd is not None:
        try:
            Decimal(limit_usd)
        except ArithmeticError:
            raise ConfigurationError(f"--limit-usd {limit_usd!r} is not a number") from None
    definition = definition_from_args(
        limit_usd=limit_usd,
        limit_tokens=limit_tokens,
        window=window,
        scope=scope,
        mode=mode,
        thresholds=tuple(thresholds) if thresholds else None,
        timezone=timezone_name,
        where=where,
    )
    created = name not in cfg.budgets
    cfg.budgets[name] = definition
    if store_url:
        cfg.store = store_url
    save_budget_config(path, cfg)
    return path, created


def _parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"{flag} {item!r} must look like key=value (e.g. agent=support)"
            )
        out[key.strip()] = val.strip()
    return out


def budget_app(errors: Callable[[Any], Any]) -> Any:
    """The ``tokenward budget`` typer group (``show``, ``set``); ``errors`` is the CLI's
    exception-to-exit-code decorator."""
    import typer

    app = typer.Typer(
        help="Budget definitions (TOML/JSON file) and their live status.", no_args_is_help=True
    )

    @app.command("show")
    @errors
    def show(
        config: str | None = typer.Option(
            None, "--config", "-c", help=f"Budgets file (default {DEFAULT_BUDGETS_FILE})."
        ),
        store: str | None = typer.Option(
            None,
            "--store",
            help="Budget store: SQLite path, postgresql://, redis:// "
            "(default: [store] url in the file, or $TOKENWARD_BUDGET_STORE).",
        ),
        user: list[str] | None = typer.Option(  # noqa: B008
            None, "--user", "-u", help="Show this user's counters (repeatable)."
        ),
        dim: list[str] | None = typer.Option(  # noqa: B008
            None, "--dim", help="Other scope dimension key=value, e.g. agent=support (repeatable)."
        ),
        name: list[str] | None = typer.Option(  # noqa: B008
            None, "--name", "-n", help="Only this budget (repeatable)."
        ),
        fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    ) -> None:
        """Live status of each budget: spent, reserved, remaining, utilization, reset time."""
        if fmt not in ("table", "json"):
            raise ConfigurationError(f"--format {fmt!r}: choose table or json")
        budget_show(
            config_path=config,
            store_url=store,
            users=user or (),
            dims=_parse_pairs(dim, "--dim"),
            names=name or (),
            fmt=fmt,
        )

    @app.command("set")
    @errors
    def set_(
        name: str = typer.Argument(..., help="Budget name (unique in the file)."),
        limit_usd: str | None = typer.Option(None, "--limit-usd", help="Limit in USD, e.g. 5."),
        limit_tokens: int | None = typer.Option(None, "--limit-tokens", help="Limit in tokens."),
        window: str = typer.Option(
            "day",
            "--window",
            "-w",
            help="request, conversation, day, week, month, or rolling 24h / 30m / 7d.",
        ),
        scope: str | None = typer.Option(
            None,
            "--scope",
            "-s",
            help="Dimension(s) with their own counter: user_id or user_id,agent.",
        ),
        mode: str = typer.Option("hard", "--mode", help="hard (deny) or soft (alert only)."),
        threshold: list[float] | None = typer.Option(  # noqa: B008
            None,
            "--threshold",
            help="Alert threshold in (0, 1] (repeatable; default 0.5 0.75 0.9).",
        ),
        tz: str | None = typer.Option(None, "--timezone", help="IANA zone for calendar windows."),
        where: list[str] | None = typer.Option(  # noqa: B008
            None, "--where", help="Apply only to calls with key=value (repeatable)."
        ),
        config: str | None = typer.Option(
            None,
            "--config",
            "-c",
            help=f"Budgets file to write (default {DEFAULT_BUDGETS_FILE}; .toml or .json).",
        ),
        store: str | None = typer.Option(None, "--store", help="Also record the store URL."),
    ) -> None:
        """Add or replace a budget definition in the budgets file (validated first)."""
        path, created = budget_set(
            name,
            config_path=config,
            limit_usd=limit_usd,
            limit_tokens=limit_tokens,
            window=window,
            scope=scope,
            mode=mode,
            thresholds=threshold,
            timezone_name=tz,
            where=_parse_pairs(where, "--where"),
            store_url=store,
        )
        typer.echo(f"{'added' if created else 'updated'} budget {name!r} in {path}")

    return app
