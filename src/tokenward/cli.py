"""The ``tokenward`` command (typer + rich, installed with ``pip install "tokenward[cli]"``).

Commands: ``count``, ``cost``, ``models``, ``report``, ``demo``. Errors are one line on
stderr; exit code 2 for usage errors (bad arguments, unknown model, unreadable file),
1 for other failures.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import typer
    from rich.console import Console

__all__ = ["get_app", "main"]

_INSTALL_HINT = 'The tokenward command needs its extra: pip install "tokenward[cli]"'

F = TypeVar("F", bound=Callable[..., Any])


class _UsageProblem(Exception):
    """A bad argument or input the user can fix (exit code 2)."""


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        try:
            width = int(os.environ.get("COLUMNS", "140"))
        except ValueError:
            width = 140
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def _fail(message: str, code: int) -> None:
    import typer

    one_line = " ".join(message.split())  # one line, even for multi-line messages
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(code)


def _errors(func: F) -> F:
    """Turn exceptions into one clear stderr line and the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import typer

        from tokenward.errors import (
            ConfigurationError,
            TokenwardError,
            UnknownModelError,
            UsageParseError,
        )

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, _click_exceptions().ClickException, KeyboardInterrupt):
            raise
        except (_UsageProblem, UnknownModelError, ConfigurationError, UsageParseError) as exc:
            _fail(str(exc), 2)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            _fail(f"{exc.strerror}: {exc.filename}", 2)
        except TokenwardError as exc:
            _fail(f"{exc} [{exc.code}]", 1)
        except Exception as exc:  # noqa: BLE001 - the CLI reports, never dumps a traceback
            _fail(f"{type(exc).__name__}: {exc}", 1)

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------- helpers
def _read_source(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    if os.path.isdir(path):
        raise _UsageProblem(f"{path} is a directory; pass a text or JSON file (or - for stdin)")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise _UsageProblem(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise _UsageProblem(f"{path} is not UTF-8 text") from None


def _parse_messages(text: str) -> list[dict[str, Any]] | None:
    """Chat messages when ``text`` is a JSON list of messages (or ``{"messages": [...]}``)."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if isinstance(data, list) and data and all(isinstance(m, dict) and "role" in m for m in data):
        return data
    return None


def _money(value: Decimal | None, places: int = 6) -> str:
    if value is None:
        return "-"
    q = Decimal(1).scaleb(-places)
    return f"${value.quantize(q)}"


def _price(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"${value.normalize():f}"


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.quantize(Decimal('0.1'))}%"


def _parse_duration_or_date(value: str | None, *, name: str) -> Any:
    """``7d``/``12h``/``30m``/``2w`` -> a datetime that far back; ISO dates as given (UTC)."""
    from datetime import datetime, timedelta, timezone

    if value is None or value == "":
        return None
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    v = value.strip().lower()
    if v[-1:] in units and v[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(**{units[v[-1]]: int(v[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _UsageProblem(
            f"--{name} {value!r} is neither a duration (7d, 12h, 30m, 2w) nor an ISO date "
            f"(2026-11-01 or 2026-11-01T12:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _parse_where(values: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise _UsageProblem(f"--where {item!r} must look like key=value (e.g. user_id=u1)")
        out[key.strip()] = val.strip()
    return out


class _progress:
    """A transient rich progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, what: str, total: int | None = None) -> None:
        self.what = what
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[..., None]:
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._progress = Progress(console=_console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.what, total=self.total)
        return self.advance

    def advance(self, step: str = "", n: int = 1) -> None:
        if self._progress is not None:
            desc = f"{self.what}: {step}" if step else self.what
            self._progress.update(self._task, advance=n, description=desc)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


# ----------------------------------------------------------------------------- commands
def _cmd_count(file: str, model: str) -> None:
    from rich.table import Table

    from tokenward.catalog import default_catalog
    from tokenward.counting import count_messages, count_text

    default_catalog().get(model)  # unknown model -> clear error (exit 2)
    text = _read_source(file)
    messages = _parse_messages(text)
    if messages is not None:
        try:
            result = count_messages(messages, model=model)
        except (TypeError, ValueError, KeyError) as exc:
            raise _UsageProblem(f"{file}: not a valid list of chat messages ({exc})") from None
        what = f"{len(messages)} chat messages"
    else:
        result = count_text(text, model=model)
        what = f"text, {len(text)} characters"
    table = Table(title=f"Token count ({model})", show_header=True)
    table.add_column("input")
    table.add_column("tokens", justify="right")
    table.add_column("count")
    table.add_column("method")
    table.add_row(
        what, f"{result.tokens:,}", "exact" if result.exact else "estimated", result.method
    )
    _console().print(table)


def _cmd_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
    cache_write_1h: int,
    reasoning: int,
    batch: bool,
    fmt: str,
) -> None:
    from rich.table import Table

    from tokenward.catalog import default_catalog
    from tokenward.cost import cost
    from tokenward.usage import Usage

    for flag, val in (
        ("--input", input_tokens),
        ("--output", output_tokens),
        ("--cache-read", cache_read),
        ("--cache-write", cache_write),
        ("--cache-write-1h", cache_write_1h),
        ("--reasoning", reasoning),
    ):
        if val < 0:
            raise _UsageProblem(f"{flag} must be >= 0, got {val}")
    if cache_read + cache_write + cache_write_1h > input_tokens:
        raise _UsageProblem(
            f"--input counts every prompt token including cached ones: it must be >= "
            f"--cache-read + --cache-write + --cache-write-1h "
            f"({cache_read + cache_write + cache_write_1h}), got {input_tokens}"
        )
    if reasoning > output_tokens:
        raise _UsageProblem(
            f"--output counts every generated token including reasoning: it must be >= "
            f"--reasoning ({reasoning}), got {output_tokens}"
        )
    catalog = default_catalog()
    info = catalog.get(model)
    usage = Usage(
        input=input_tokens,
        output=output_tokens,
        cache_read=cache_read,
        cache_write_5m=cache_write,
        cache_write_1h=cache_write_1h,
        reasoning=reasoning,
    )
    bd = cost(usage, info, catalog=catalog, batch=batch)
    prices = info.prices_for(input_tokens)
    tokens = {
        "input": usage.uncached_input,
        "cache_read": cache_read,
        "cache_write_5m": cache_write,
        "cache_write_1h": cache_write_1h,
        "output": output_tokens - reasoning,
        "reasoning": reasoning,
    }
    unit = {
        "input": prices.input,
        "cache_read": prices.cache_read,
        "cache_write_5m": prices.cache_write_5m,
        "cache_write_1h": prices.cache_write_1h,
        "output": prices.output,
        "reasoning": prices.reasoning if prices.reasoning is not None else prices.output,
    }
    components = bd.components()
    percentages = bd.percentages()
    rows: list[dict[str, Any]] = []
    for comp, amount in components.items():
        n = tokens.get(comp, 0)
        if n == 0 and not amount:
            continue
        rows.append(
            {
                "component": comp,
                "tokens": n,
                "price_per_1m": None if unit.get(comp) is None else str(unit[comp]),
                "amount": str(amount),
                "percent": str(percentages.get(comp, Decimal(0))),
            }
        )
    if fmt == "json":
        payload = {
            "model": info.name,
            "provider": info.provider,
            "batch": batch,
            "tier_above_input_tokens": bd.tier,
            "total": str(bd.total),
            "as_of": str(info.as_of),
            "components": rows,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    title = f"Cost of one call: {info.name} ({info.provider})"
    if bd.tier is not None:
        title += f", tier above {bd.tier:,} input tokens"
    if batch:
        title += ", batch"
    table = Table(title=title)
    table.add_column("component")
    table.add_column("tokens", justify="right")
    table.add_column("$ / 1M", justify="right")
    table.add_column("amount", justify="right")
    table.add_column("share", justify="right")
    for r in rows:
        price = r["price_per_1m"]
        table.add_row(
            r["component"],
            f"{r['tokens']:,}",
            _price(Decimal(price)) if price else "-",
            _money(Decimal(r["amount"]), 8),
            _percent(Decimal(r["percent"])),
        )
    table.add_section()
    table.add_row(
        "total", f"{usage.total:,}", "", _money(bd.total, 8), "100.0%" if bd.total else "-"
    )
    console = _console()
    console.print(table)
    console.print(f"prices as of {info.as_of} ({info.source})")


def _cmd_models(provider: str | None, search: str | None, fmt: str) -> None:
    from rich.table import Table

    from tokenward.catalog import default_catalog

    models = default_catalog().models(provider=provider, search=search)
    if not models:
        raise _UsageProblem(
            "no model matches"
            + (f" provider={provider!r}" if provider else "")
            + (f" search={search!r}" if search else "")
            + "; run `tokenward models` to list them all"
        )
    if fmt == "json":
        out = []
        for m in models:
            p = m.prices
            out.append(
                {
                    "name": m.name,
                    "provider": m.provider,
                    "mode": m.mode,
                    "context_window": m.context_window,
                    "max_output": m.max_output,
                    "input": str(p.input),
                    "output": str(p.output),
                    "cache_read": None if p.cache_read is None else str(p.cache_read),
                    "cache_write_5m": None if p.cache_write_5m is None else str(p.cache_write_5m),
                    "tiers": [t.above_input_tokens for t in m.tiers],
                    "as_of": str(m.as_of),
                }
            )
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    table = Table(title=f"Models ({len(models)}), USD per 1M tokens")
    for col, justify in (
        ("model", "left"),
        ("provider", "left"),
        ("context", "right"),
        ("max out", "right"),
        ("input", "right"),
        ("output", "right"),
        ("cache read", "right"),
        ("cache write", "right"),
        ("tiers", "left"),
        ("as of", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in models:
        p = m.prices
        tiers = ", ".join(f">{t.above_input_tokens // 1000}k" for t in m.tiers) or ""
        table.add_row(
            m.name,
            m.provider,
            f"{m.context_window:,}",
            f"{m.max_output:,}" if m.max_output else "-",
            _price(p.input),
            _price(p.output),
            _price(p.cache_read),
            _price(p.cache_write_5m),
            tiers,
            str(m.as_of),
        )
    _console().print(table)


def _cmd_report(
    db: str | None,
    since: str | None,
    until: str | None,
    by: str,
    where: Sequence[str] | None,
    fmt: str,
    output: str | None,
    model: str | None = None,
    budgets_file: str | None = None,
    budget_store: str | None = None,
) -> None:
    from tokenward.report import _tables

    target = db or os.environ.get("TOKENWARD_DB") or os.path.join(".tokenward", "ledger.db")
    if "://" not in target and not os.path.exists(target):
        raise _UsageProblem(
            f"no ledger at {target}; pass --db PATH_OR_URL, set TOKENWARD_DB, "
            f"or run `tokenward demo --db {target}` to create a sample one"
        )
    by_keys = [k.strip() for k in by.split(",") if k.strip()] if by else []
    bad = [k for k in by_keys if not _tables.valid_group_key(k)]
    if bad:
        raise _UsageProblem(
            f"--by {','.join(bad)}: unknown dimension; choose from "
            f"{', '.join(_tables.GROUP_KEYS)} or tag:<key>"
        )
    where_d = _parse_where(where)
    if model:
        where_d["model"] = model
    bad = [k for k in where_d if not _tables.valid_group_key(k)]
    if bad:
        raise _UsageProblem(
            f"--where {','.join(bad)}: unknown dimension; choose from "
            f"{', '.join(_tables.GROUP_KEYS)} or tag:<key>"
        )
    since_dt = _parse_duration_or_date(since, name="since")
    until_dt = _parse_duration_or_date(until, name="until")
    formats = _tables.available_formats()
    if fmt not in formats:
        raise _UsageProblem(f"--format {fmt!r}: choose one of {', '.join(formats)}")
    from tokenward.ledger import open_ledger

    builder: Callable[..., Any] = _tables.build_report
    if fmt not in _tables.FORMATS:
        # richer formats (html) draw more than the tables: use the full report builder
        try:
            from tokenward.report import build_report_data as builder
        except ImportError:
            pass
    if fmt == "html" or budgets_file:  # budgets from a definitions file (live with a store)
        from tokenward.report._cli import report_data_builder

        builder = report_data_builder(budgets_file, budget_store)
    ledger = open_ledger(target)
    try:
        with _progress("report") as advance:
            data = builder(
                ledger,
                since=since_dt,
                until=until_dt,
                by=by_keys,
                where=where_d,
                source=target,
                progress=advance,
            )
    finally:
        ledger.close()
    text = _tables.render(data, fmt, console=_console() if fmt == "table" and not output else None)
    if text is not None:
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
            _echo_err(f"wrote {output}")
        else:
            sys.stdout.write(text)


def _echo_err(message: str) -> None:
    import typer

    typer.echo(message, err=True)


def _cmd_demo(db: str | None, users: int, seed: int, budget: bool) -> None:
    from tokenward import _demo
    from tokenward.report import _tables

    if users < 1 or users > 500:
        raise _UsageProblem(f"--users must be between 1 and 500, got {users}")
    console = _console()
    result = _demo.run_demo(db, users=users, seed=seed, with_budget=budget, console=console)
    for line in _demo.describe(result):
        console.print(line)
    console.print()
    assert result.report is not None
    _tables.render(result.report, "table", console=console)
    console.print(
        f"\nledger: {result.db_path}  (re-run: tokenward report --db {result.db_path} --by user_id)"
    )


# ----------------------------------------------------------------------------- app
def _click_exceptions() -> Any:
    """The click exception classes typer raises (recent typer versions vendor click)."""
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:  # typer < 0.2x uses click itself
        return importlib.import_module("click.exceptions")


def _group_class() -> type:
    """A TyperGroup whose usage errors are one line on stderr (exit 2), not a rich panel."""
    import typer
    from typer.core import TyperGroup

    ex = _click_exceptions()

    class _Group(TyperGroup):
        def main(  # type: ignore[override]
            self,
            args: Sequence[str] | None = None,
            prog_name: str | None = None,
            complete_var: str | None = None,
            standalone_mode: bool = True,
            **extra: Any,
        ) -> Any:
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except ex.NoArgsIsHelpError as exc:
                typer.echo(exc.format_message())
                sys.exit(2)
            except ex.UsageError as exc:
                hint = ""
                if getattr(exc, "ctx", None) is not None:
                    hint = f" (see: {exc.ctx.command_path} --help)"
                typer.echo(f"error: {exc.format_message()}{hint}", err=True)
                sys.exit(exc.exit_code)
            except ex.ClickException as exc:
                typer.echo(f"error: {exc.format_message()}", err=True)
                sys.exit(exc.exit_code)
            except typer.Abort:
                typer.echo("Aborted.", err=True)
                sys.exit(1)
            sys.exit(rv if isinstance(rv, int) else 0)

    return _Group


def get_app() -> typer.Typer:
    """Build the typer application (imports typer and rich)."""
    import typer

    app = typer.Typer(
        name="tokenward",
        help="Count, price and bound LLM token usage.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        cls=_group_class(),
    )

    @app.command("count")
    @_errors
    def count(
        file: str = typer.Argument(
            ..., help="A text file, a JSON list of chat messages, or - for stdin."
        ),
        model: str = typer.Option("gpt-4o", "--model", "-m", help="Model whose tokenizer to use."),
    ) -> None:
        """Count the tokens of a text or a JSON chat transcript."""
        _cmd_count(file, model)

    @app.command("cost")
    @_errors
    def cost_(
        model: str = typer.Option(
            ..., "--model", "-m", help="Model name (aliases and prefixes work)."
        ),
        input_tokens: int = typer.Option(
            0, "--input", help="Prompt tokens, including cached ones."
        ),
        output_tokens: int = typer.Option(
            0, "--output", help="Generated tokens, including reasoning."
        ),
        cache_read: int = typer.Option(
            0, "--cache-read", help="Prompt tokens read from the cache."
        ),
        cache_write: int = typer.Option(
            0, "--cache-write", help="Prompt tokens written to the 5-minute cache."
        ),
        cache_write_1h: int = typer.Option(
            0, "--cache-write-1h", help="Prompt tokens written to the 1-hour cache."
        ),
        reasoning: int = typer.Option(
            0, "--reasoning", help="Reasoning tokens (part of --output)."
        ),
        batch: bool = typer.Option(False, "--batch", help="Apply the provider's batch discount."),
        fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    ) -> None:
        """Price one call: a breakdown by component with amounts and shares."""
        if fmt not in ("table", "json"):
            raise _UsageProblem(f"--format {fmt!r}: choose table or json")
        _cmd_cost(
            model,
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            cache_write_1h,
            reasoning,
            batch,
            fmt,
        )

    @app.command("models")
    @_errors
    def models(
        provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider."),
        search: str | None = typer.Option(
            None, "--search", "-s", help="Substring of the model name."
        ),
        fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    ) -> None:
        """List the catalog: context windows, prices and their date."""
        if fmt not in ("table", "json"):
            raise _UsageProblem(f"--format {fmt!r}: choose table or json")
        _cmd_models(provider, search, fmt)

    @app.command("report")
    @_errors
    def report(
        db: str | None = typer.Option(
            None, "--db", help="Ledger path or URL (default $TOKENWARD_DB or .tokenward/ledger.db)."
        ),
        since: str | None = typer.Option("30d", "--since", help="7d, 12h, 2w or an ISO date."),
        until: str | None = typer.Option(
            None, "--until", help="7d, 12h or an ISO date (default now)."
        ),
        by: str = typer.Option(
            "model", "--by", help="Comma-separated dimensions: user_id,model,..."
        ),
        where: list[str] | None = typer.Option(  # noqa: B008
            None, "--where", help="Filter key=value (repeatable)."
        ),
        fmt: str = typer.Option(
            "table", "--format", "-f", help="table, json, csv (html when available)."
        ),
        output: str | None = typer.Option(
            None, "--output", "-o", help="Write to a file instead of stdout."
        ),
        model: str | None = typer.Option(None, "--model", "-m", help="Only this model."),
        budgets_file: str | None = typer.Option(
            None, "--budgets", help="Budget definitions (TOML/JSON) to show utilization for."
        ),
        budget_store: str | None = typer.Option(
            None, "--budget-store", help="Budget store URL for live status (default: the file's)."
        ),
    ) -> None:
        """Summarize the ledger: totals, breakdown by dimension, analytics."""
        _cmd_report(db, since, until, by, where, fmt, output, model, budgets_file, budget_store)

    @app.command("demo")
    @_errors
    def demo(
        db: str | None = typer.Option(
            None, "--db", help="SQLite file to write (default: a temporary file)."
        ),
        users: int = typer.Option(6, "--users", help="Number of simulated users."),
        seed: int = typer.Option(7, "--seed", help="Random seed (the session is deterministic)."),
        budget: bool = typer.Option(
            True, "--budget/--no-budget", help="Add a budget that denies one call."
        ),
    ) -> None:
        """Run a realistic offline session through the Accountant and print the report."""
        _cmd_demo(db, users, seed, budget)

    from tokenward.report._cli import budget_app

    app.add_typer(budget_app(_errors), name="budget")
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tokenward`` command."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        sys.stderr.write(_INSTALL_HINT + "\n")
        raise SystemExit(1) from None
    app = get_app()
    app(args=list(argv) if argv is not None else None, prog_name="tokenward")


if __name__ == "__main__":  # pragma: no cover
    main()
