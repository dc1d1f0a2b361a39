"""The ``tokenward`` command (typer + rich, installed with ``pip install "tokenward[cli]"``).

Commands: ``count``, ``cost``, ``models``, ``report``, ``whatif``, ``demo``,
``budget show|set``. Errors are one line on stderr, phrased as what to type next; exit code 2
for usage errors (bad arguments, unknown model, unreadable file, bad budgets file), 1 for other
failures. Numbers are formatted by :mod:`tokenward.report._format` (the same text as the
CSV/JSON/HTML reports).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import typer
    from rich.console import Console

    from tokenward.errors import UnknownModelError

__all__ = ["get_app", "main"]

_INSTALL_HINT = 'The tokenward command needs its extra: pip install "tokenward[cli]"'
#: The ledger ``report`` reads unless ``--db``/``$TOKENWARD_DB`` say otherwise (the same file
#: ``Accountant.default()`` writes, and the one ``make demo`` fills).
DEFAULT_LEDGER = os.path.join(".tokenward", "ledger.db")
#: Where ``tokenward budget`` reads and writes definitions unless ``--config`` says otherwise.
DEFAULT_BUDGETS_FILE = "budgets.toml"

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


def _unknown_model(exc: UnknownModelError) -> str:
    """The catalog's error, phrased as commands (its own text advises Python calls)."""
    hint = f" (did you mean {', '.join(exc.suggestions)}?)" if exc.suggestions else ""
    probe = re.split(r"[-_/.:@]", exc.model.split("/")[-1])[0] or exc.model
    return (
        f"unknown model {exc.model!r}{hint}; list the known ones with "
        f"`tokenward models --search {probe}`"
    )


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
        except UnknownModelError as exc:
            _fail(_unknown_model(exc), 2)
        except (_UsageProblem, ConfigurationError, UsageParseError) as exc:
            _fail(str(exc), 2)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            _fail(f"{exc.strerror}: {exc.filename}", 2)
        except TokenwardError as exc:
            _fail(f"{exc} [{exc.code}]", 1)
        except Exception as exc:  # noqa: BLE001 - the CLI reports, never dumps a traceback
            _fail(f"{type(exc).__name__}: {exc}", 1)

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------- helpers
_LOOKS_LIKE_A_PATH = re.compile(r"^\S*(/|\\|\.[A-Za-z0-9]{1,5}$)\S*$")


def _read_file(path: str) -> str:
    if os.path.isdir(path):
        raise _UsageProblem(f"{path} is a directory; pass a text or JSON file (or - for stdin)")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise _UsageProblem(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise _UsageProblem(f"{path} is not UTF-8 text") from None


def _count_source(text: str | None, file: str | None) -> tuple[str, str]:
    """``(content, what it is)`` for ``count``: ``--file PATH``, ``-`` (stdin), an existing
    path, or else the literal text."""
    if file is not None:
        if text is not None:
            raise _UsageProblem("give TEXT or --file PATH, not both")
        return _read_file(file), f"file {file}"
    if text is None:
        raise _UsageProblem(
            "nothing to count: give the TEXT, --file PATH, or - to read stdin "
            '(e.g. tokenward count "hello world" --model gpt-4o)'
        )
    if text == "-":
        return sys.stdin.read(), "stdin"
    if os.path.exists(text):
        return _read_file(text), f"file {text}"
    if _LOOKS_LIKE_A_PATH.match(text):
        _echo_err(f"note: no file named {text}; counted it as text (--file PATH reads a file)")
    return text, "text"


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


def _price(value: Decimal | None) -> str:
    from tokenward.report._format import price

    return price(value)


_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _parse_duration_or_date(value: str | None, *, name: str) -> Any:
    """``7d``/``12h``/``30m``/``2w`` -> a datetime that far back; ISO dates as given (UTC)."""
    from datetime import datetime, timedelta, timezone

    if value is None or value == "":
        return None
    v = value.strip().lower()
    if v[-1:] in _DURATION_UNITS and v[:-1].isdigit():
        try:
            return datetime.now(timezone.utc) - timedelta(**{_DURATION_UNITS[v[-1]]: int(v[:-1])})
        except OverflowError:
            raise _UsageProblem(
                f"--{name} {value}: too far back (before the year 1); give a shorter duration "
                f"such as 3650d, or a date such as 2020-01-01"
            ) from None
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


def _parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise _UsageProblem(f"{flag} {item!r} must look like key=value (e.g. user_id=u1)")
        out[key.strip()] = val.strip()
    return out


def _ledger_target(db: str | None) -> str:
    target = db or os.environ.get("TOKENWARD_DB") or DEFAULT_LEDGER
    if "://" not in target and not os.path.exists(target):
        raise _UsageProblem(
            f"no ledger at {target}; pass --db PATH_OR_URL, set TOKENWARD_DB, "
            f"or run `tokenward demo --db {target}` to create a sample one"
        )
    return target


def _echo_err(message: str) -> None:
    import typer

    typer.echo(message, err=True)


class _ProgressBar:
    """A transient rich progress bar on stderr, drawn only when stderr is a terminal (never in
    pipes, files or CI logs). ``total=None`` shows an activity bar without a percentage.

        with _progress_bar("downloading prices", total=n_bytes) as bar:
            bar.advance(n=len(chunk))          # or bar.advance("step name"), bar.set_total(n)
    """

    def __init__(self, description: str, total: int | None = None) -> None:
        self.description = description
        self._total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._progress = Progress(console=_console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self._total)
        return self

    def set_total(self, total: int | None) -> None:
        """Set (or change) the number of steps once it is known."""
        self._total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def advance(self, step: str = "", n: int = 1) -> None:
        """``n`` more steps done; ``step`` names the one starting now (shown after the title)."""
        if self._progress is not None:
            desc = f"{self.description}: {step}" if step else self.description
            self._progress.update(self._task, advance=n, description=desc)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _progress_bar(description: str, total: int | None = None) -> _ProgressBar:
    """The progress bar every long command uses (see :class:`_ProgressBar`)."""
    return _ProgressBar(description, total)


# ----------------------------------------------------------------------------- commands
def _cmd_count(text: str | None, file: str | None, model: str) -> None:
    from rich.table import Table

    from tokenward.catalog import default_catalog
    from tokenward.counting import count_messages, count_text
    from tokenward.report._format import number

    default_catalog().get(model)  # unknown model -> clear error (exit 2)
    content, source = _count_source(text, file)
    messages = _parse_messages(content)
    if messages is not None:
        try:
            result = count_messages(messages, model=model)
        except (TypeError, ValueError, KeyError) as exc:
            raise _UsageProblem(f"{source}: not a valid list of chat messages ({exc})") from None
        what = f"{source}: {len(messages)} chat messages"
    else:
        result = count_text(content, model=model)
        what = f"{source}, {number(len(content))} characters"
    table = Table(title=f"Token count ({model})", show_header=True)
    table.add_column("input")
    table.add_column("tokens", justify="right")
    table.add_column("count")
    table.add_column("method")
    table.add_row(
        what, number(result.tokens), "exact" if result.exact else "estimated", result.method
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
    from tokenward.errors import PricingMissingError
    from tokenward.report._format import NA, number, percent, plain, price, usd
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
    standard = info.prices_for(input_tokens)
    try:  # the prices this call pays: the batch prices with --batch
        prices = info.prices_for(input_tokens, batch=batch)
    except PricingMissingError:
        raise _UsageProblem(
            f"--batch: {info.name} has no batch price; run it without --batch"
        ) from None
    usage = Usage(
        input=input_tokens,
        output=output_tokens,
        cache_read=cache_read,
        cache_write_5m=cache_write,
        cache_write_1h=cache_write_1h,
        reasoning=reasoning,
    )
    bd = cost(usage, info, catalog=catalog, batch=batch)
    keep = prices.input / standard.input if batch and standard.input else Decimal(1)
    tokens = {
        "input": usage.uncached_input,
        "cache_read": cache_read,
        "cache_write_5m": cache_write,
        "cache_write_1h": cache_write_1h,
        "output": output_tokens - reasoning,
        "reasoning": reasoning,
    }
    listed = {
        "input": prices.input,
        "cache_read": prices.cache_read,
        "cache_write_5m": prices.cache_write_5m,
        "cache_write_1h": prices.cache_write_1h,
        "output": prices.output,
        "reasoning": prices.reasoning if prices.reasoning is not None else prices.output,
    }
    unit = listed  # what the amounts were computed from (batch prices with --batch)
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
                "price_per_1m": plain(unit.get(comp)),
                "amount": plain(amount),
                "percent": plain(percentages.get(comp, Decimal(0))),
            }
        )
    if fmt == "json":
        payload = {
            "model": info.name,
            "provider": info.provider,
            "batch": batch,
            "tier_above_input_tokens": bd.tier,
            "total": plain(bd.total),
            "price_source": info.price_source,
            "as_of": str(info.as_of),
            "components": rows,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    title = f"Cost of one call: {info.name} ({info.provider})"
    if bd.tier is not None:
        title += f", tier above {bd.tier:,} input tokens"
    if batch:
        title += f", batch price ({percent(1 - keep, 0)} off)"
    table = Table(title=title)
    table.add_column("component")
    table.add_column("tokens", justify="right")
    table.add_column("$ / 1M (batch)" if batch else "$ / 1M", justify="right")
    table.add_column("amount", justify="right")
    table.add_column("share", justify="right")
    for r in rows:
        table.add_row(
            r["component"],
            number(r["tokens"]),
            price(unit[r["component"]]) if unit.get(r["component"]) is not None else NA,
            usd(Decimal(r["amount"])),
            percent(Decimal(r["percent"]) / 100),
        )
    table.add_section()
    table.add_row("total", number(usage.total), "", usd(bd.total), percent(1) if bd.total else NA)
    console = _console()
    console.print(table)
    console.print(f"prices as of {info.as_of}: {info.price_source} ({info.source})")


def _cmd_models(provider: str | None, search: str | None, fmt: str) -> None:
    from rich.table import Table

    from tokenward.catalog import default_catalog

    catalog = default_catalog()
    models = catalog.models(provider=provider, search=search)
    if not models:
        raise _UsageProblem(
            "no model matches"
            + (f" provider={provider!r}" if provider else "")
            + (f" search={search!r}" if search else "")
            + "; run `tokenward models` to list them all, or `tokenward models update` for "
            "newer price data"
        )
    if fmt == "json":
        out = []
        for m in models:
            p = m.prices
            assert p is not None  # the catalog lists priced models only
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
                    "cache_write_1h": None if p.cache_write_1h is None else str(p.cache_write_1h),
                    "tiers": [t.above_input_tokens for t in m.tiers],
                    "batch_discount": None if m.batch_discount is None else str(m.batch_discount),
                    "dated_prices": len(m.periods),
                    "tokenizer": m.tokenizer,
                    "price_source": m.price_source,
                    "as_of": str(m.as_of),
                    "source": m.source,
                }
            )
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    data = catalog.price_data
    origin = ""
    if data is not None:
        origin = f"; prices: {data.source}" + (" (bundled)" if data.origin == "bundled" else "")
    table = Table(title=f"Models ({len(models)}), USD per 1M tokens{origin}")
    table.add_column("model", no_wrap=True)  # names are what users copy: never cut
    for col, justify in (
        ("provider", "left"),
        ("context", "right"),
        ("max out", "right"),
        ("input", "right"),
        ("output", "right"),
        ("cache read", "right"),
        ("cache write", "right"),
        ("tiers", "left"),
        ("source", "left"),
        ("as of", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in models:
        p = m.prices
        assert p is not None
        tiers = ", ".join(f">{t.above_input_tokens // 1000}k" for t in m.tiers)
        if m.periods:
            tiers = ", ".join(x for x in (tiers, "dated") if x)
        table.add_row(
            m.name,
            m.provider,
            f"{m.context_window:,}" if m.context_window else "-",
            f"{m.max_output:,}" if m.max_output else "-",
            _price(p.input),
            _price(p.output),
            _price(p.cache_read),
            _price(p.cache_write_5m),
            tiers,
            m.price_source,
            str(m.as_of),
        )
    _console().print(table)


def _calibration_rows(records: Sequence[Any]) -> list[dict[str, Any]]:
    """One JSON-ready row per calibration record (overall accuracy over its kept days)."""
    rows = []
    for r in records:
        n = sum(p.samples for p in r.accuracy)
        rows.append(
            {
                "provider": r.provider,
                "model": r.model,
                "content_class": r.content_class,
                "samples": r.samples,
                "ratio": r.ratio,
                "error_before": sum(p.sum_before for p in r.accuracy) / n if n else None,
                "error_after": sum(p.sum_after for p in r.accuracy) / n if n else None,
                "updated": r.history[-1].at.isoformat() if r.history else None,
                "history": [s.to_dict() for s in r.history],
                "accuracy": [
                    {
                        "day": p.day.isoformat(),
                        "samples": p.samples,
                        "error_before": p.error_before,
                        "error_after": p.error_after,
                    }
                    for p in r.accuracy
                ],
            }
        )
    return rows


def _cmd_models_calibration(
    db: str | None, provider: str | None, search: str | None, fmt: str, days: int
) -> None:
    from rich.table import Table

    from tokenward.counting import read_calibration
    from tokenward.ledger import open_ledger
    from tokenward.report._format import NA, number, percent

    target = _ledger_target(db)
    ledger = open_ledger(target, read_only=True)  # reading never creates or migrates
    try:
        records, bad = read_calibration(ledger)
    finally:
        ledger.close()
    if bad:
        _echo_err(f"warning: skipped {bad} unreadable calibration record(s) in {target}")
    needle = (search or "").lower()
    records = sorted(
        (
            r
            for r in records
            if (provider is None or r.provider == provider)
            and (not needle or needle in r.model.lower())
        ),
        key=lambda r: (r.provider, r.model, r.content_class != "*", r.content_class),
    )
    rows = _calibration_rows(records)
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        filters = "".join(
            f" {k}={v!r}" for k, v in (("provider", provider), ("search", search)) if v
        )
        sys.stdout.write(
            f"No estimator calibration in {target}{filters}. It is learned when an Accountant "
            "using this ledger settles calls on models without a local tokenizer.\n"
        )
        return
    console = _console()
    table = Table(
        title=f"Estimator calibration ({len(rows)}), {target}; ratio = provider count / o200k count"
    )
    table.add_column("provider")
    table.add_column("model", no_wrap=True)
    for col in ("class", "samples", "ratio", "error raw", "error calibrated", "ratio drift"):
        table.add_column(col, justify="left" if col in ("class", "ratio drift") else "right")
    table.add_column("updated")
    for r, row in zip(records, rows):
        drift = " > ".join(number(s.ratio, 3) for s in r.history[-4:])
        if len(r.history) > 4:
            drift = "... > " + drift
        table.add_row(
            r.provider or NA,
            r.model,
            "all" if r.content_class == "*" else r.content_class,
            number(row["samples"]),
            number(r.ratio, 3),
            percent(row["error_before"]),
            percent(row["error_after"]),
            drift or NA,
            r.history[-1].at.strftime("%Y-%m-%d %H:%M") if r.history else NA,
        )
    console.print(table)
    if days <= 0:
        return
    over_time = Table(
        title=f"Estimation accuracy over time (last {days} days kept per key; mean relative "
        "error of the estimate vs the provider's count)"
    )
    for col in ("model", "class", "day", "samples", "error raw", "error calibrated"):
        over_time.add_column(
            col, justify="right" if col in ("samples",) or "error" in col else "left"
        )
    for r in records:
        for p in r.accuracy[-days:]:
            over_time.add_row(
                f"{r.provider}/{r.model}" if r.provider else r.model,
                "all" if r.content_class == "*" else r.content_class,
                p.day.isoformat(),
                number(p.samples),
                percent(p.error_before),
                percent(p.error_after),
            )
    if over_time.row_count:
        console.print(over_time)


def _load_budgets(path: str) -> list[Any]:
    from tokenward._budget_config import load_budget_config

    return list(load_budget_config(path).build())


def _cmd_models_update(url: str | None, timeout: float) -> None:
    from tokenward.catalog import default_catalog

    catalog = default_catalog()
    before = catalog.price_data
    with _download_progress() as progress:
        result = catalog.update(url, timeout=timeout, progress=progress)
    console = _console()
    where = (
        f"cached in {result.path}"
        if result.path
        else "kept in memory (TOKENWARD_CACHE_DIR is empty)"
    )
    console.print(
        f"Updated price data: {result.source}, {result.models:,} models of "
        f"{result.providers} providers (was: {before.source if before else 'none'}); {where}. "
        "New processes start with it."
    )


class _download_progress:
    """A transient rich download bar on stderr (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int | None], None] | None:
        if not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("Downloading price data"),
            BarColumn(),
            DownloadColumn(),
            console=_console(stderr=True),
            transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("download", total=None)
        return self.advance

    def advance(self, received: int, total: int | None) -> None:
        self._progress.update(self._task, completed=received, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


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
    whatif: Sequence[str] | None = None,
) -> None:
    from tokenward.report import _tables
    from tokenward.report._whatif import parse_scenario

    if budget_store and not budgets_file:
        raise _UsageProblem(
            "--budget-store reads the live status of the budgets in --budgets FILE; add "
            f"--budgets {DEFAULT_BUDGETS_FILE} (create it with `tokenward budget set NAME "
            "--limit-usd 5 --scope user_id`)"
        )
    formats = _tables.available_formats()
    if fmt not in formats:
        raise _UsageProblem(f"--format {fmt!r}: choose one of {', '.join(formats)}")
    if budgets_file and fmt == "csv":
        raise _UsageProblem(
            "--budgets does not apply to -f csv (one table of grouped rows); "
            "use -f table, -f json or -f html to see budget utilization"
        )
    if whatif and fmt != "html":
        raise _UsageProblem(
            "--whatif adds a section to -f html; for a table or JSON run "
            "`tokenward whatif --model NAME` (or --cache-hit 0.8, --batch)"
        )
    scenarios = [parse_scenario(text) for text in whatif or ()]
    target = _ledger_target(db)
    by_keys = [k.strip() for k in by.split(",") if k.strip()] if by else []
    bad = [k for k in by_keys if not _tables.valid_group_key(k)]
    if bad:
        raise _UsageProblem(
            f"--by {','.join(bad)}: unknown dimension; choose from "
            f"{', '.join(_tables.GROUP_KEYS)} or tag:<key>"
        )
    where_d = _parse_pairs(where, "--where")
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
    budgets = _load_budgets(budgets_file) if budgets_file else None  # a bad file fails first
    from tokenward._budget_config import open_budget_store
    from tokenward.ledger import open_ledger
    from tokenward.report._data import budget_rows, build_report_data

    ledger = open_ledger(target, read_only=True)  # a report never creates or migrates
    store = open_budget_store(budget_store) if budget_store else None
    try:
        query: dict[str, Any] = {
            "since": since_dt,
            "until": until_dt,
            "by": by_keys,
            "where": where_d,
            "source": target,
        }
        with _progress_bar("report") as bar:
            if fmt in _tables.FORMATS:  # the tables: no advisor, no HTML-only sections
                data = _tables.build_report(ledger, progress=bar.advance, **query)
                if budgets is not None:
                    bar.advance("budgets")
                    data.budgets = budget_rows(
                        ledger, budgets, store=store, now=data.generated_at, max_keys=50
                    )
                    data.budgets_requested = True
            else:
                data = build_report_data(
                    ledger,
                    budgets=budgets or (),
                    budget_store=store,
                    scenarios=scenarios,
                    progress=bar.advance,
                    **query,
                )
                data.budgets_requested = budgets is not None
    finally:
        if store is not None:
            store.close()
        ledger.close()
    text = _tables.render(data, fmt, console=_console() if fmt == "table" and not output else None)
    if text is not None:
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
            _echo_err(f"wrote {output}")
        else:
            sys.stdout.write(text)


def _cmd_whatif(
    db: str | None,
    model: str | None,
    cache_hit: float | None,
    cache_write: float | None,
    batch: bool,
    since: str | None,
    until: str | None,
    by: str,
    where: Sequence[str] | None,
    fmt: str,
) -> None:
    from tokenward.predict import Scenario, replay
    from tokenward.report import _tables
    from tokenward.report._whatif import whatif_dict, whatif_table

    if fmt not in ("table", "json"):
        raise _UsageProblem(f"--format {fmt!r}: choose table or json")
    if model is None and cache_hit is None and cache_write is None and not batch:
        raise _UsageProblem(
            "say what to change: --model NAME, --cache-hit 0.8 and/or --batch "
            "(e.g. tokenward whatif --model gpt-4o-mini --since 30d)"
        )
    by_keys = [k.strip() for k in by.split(",") if k.strip()]
    where_d = _parse_pairs(where, "--where")
    bad = [k for k in [*by_keys, *where_d] if not _tables.valid_group_key(k)]
    if bad:
        raise _UsageProblem(
            f"{', '.join(bad)}: unknown dimension; choose from "
            f"{', '.join(_tables.GROUP_KEYS)} or tag:<key>"
        )
    if model is not None:
        from tokenward.catalog import default_catalog

        model = default_catalog().get(model).name  # unknown: the usual suggestions
    scenario = Scenario(model=model, cache_hit=cache_hit, cache_write=cache_write, batch=batch)
    since_dt = _parse_duration_or_date(since, name="since")
    until_dt = _parse_duration_or_date(until, name="until")
    from tokenward.ledger import open_ledger

    ledger = open_ledger(_ledger_target(db))
    try:
        result = replay(
            ledger, scenario, since=since_dt, until=until_dt, where=where_d or None, by=by_keys
        )
    finally:
        ledger.close()
    if fmt == "json":
        sys.stdout.write(json.dumps(whatif_dict(result), indent=2) + "\n")
        return
    table, lines = whatif_table(result)
    console = _console()
    console.print(table)
    for line in lines:
        console.print(line)


def _cmd_demo(db: str | None, users: int, seed: int, budget: bool) -> None:
    from tokenward import _demo
    from tokenward.report import _tables

    if users < 1 or users > 500:
        raise _UsageProblem(f"--users must be between 1 and 500, got {users}")
    console = _console()
    with _progress_bar("simulating calls") as bar:
        result = _demo.run_demo(db, users=users, seed=seed, with_budget=budget, progress=bar)
    for line in _demo.describe(result):
        console.print(line)
    console.print()
    assert result.report is not None
    _tables.render(result.report, "table", console=console)
    default = os.environ.get("TOKENWARD_DB") or DEFAULT_LEDGER
    again = "tokenward report --by user_id"
    if os.path.abspath(result.db_path) != os.path.abspath(default):
        again = f"tokenward report --db {result.db_path} --by user_id"
    console.print(f"\nledger: {result.db_path}  (see it again: {again})")


# ----------------------------------------------------------------------------- budget
def _budgets_file(config: str | None) -> str:
    path = config or DEFAULT_BUDGETS_FILE
    if not os.path.exists(path):
        raise _UsageProblem(
            f"no budgets file at {path}; create one with "
            f"`tokenward budget set NAME --limit-usd 5 --window day --scope user_id"
            + (f" --config {path}`" if config else "`")
        )
    return path


def _status_row(budgets: Any, budget: Any, dims: Mapping[str, Any], now: Any) -> Any:
    from tokenward.report._tables import BudgetRow

    st = budgets.status(budget.name, now=now, **dims)
    return BudgetRow(
        st.budget,
        st.scope_key,
        st.unit,
        st.mode,
        st.window,
        st.limit,
        st.spent,
        st.reserved,
        st.remaining,
        st.utilization,
        budget.thresholds,
        st.reset_at,
        "store",
        near_limit=st.near_limit,
        calls=st.calls,
    )


def _cmd_budget_show(
    *,
    config: str | None,
    store_url: str | None,
    users: Sequence[str],
    dims: Mapping[str, str],
    names: Sequence[str],
    all_scopes: bool,
    db: str | None,
    fmt: str,
) -> None:
    from datetime import datetime, timezone

    from tokenward._budget_config import load_budget_config, open_budget_store
    from tokenward.budgets import Budgets
    from tokenward.report._tables import budget_dict, budget_table

    path = _budgets_file(config)
    cfg = load_budget_config(path)
    defs = cfg.build()
    if names:
        unknown = sorted(set(names) - {b.name for b in defs})
        if unknown:
            raise _UsageProblem(
                f"no budget named {', '.join(unknown)} in {path}; known: "
                f"{', '.join(b.name for b in defs) or 'none'}"
            )
        defs = [b for b in defs if b.name in names]
    url = store_url or cfg.store or os.environ.get("TOKENWARD_BUDGET_STORE")
    if not url:
        raise _UsageProblem(
            "no budget store: pass --store PATH_OR_URL (the SQLite file, postgresql:// or "
            "redis:// URL your app's Budgets use), record one with `tokenward budget set NAME "
            "... --store PATH_OR_URL`, or set TOKENWARD_BUDGET_STORE"
        )
    target = _ledger_target(db) if all_scopes else None
    store = open_budget_store(url)
    rows: list[Any] = []
    notes: list[str] = []
    now = datetime.now(timezone.utc)
    try:
        if target is not None:
            from tokenward.ledger import open_ledger
            from tokenward.report._data import budget_rows

            ledger = open_ledger(target)
            try:
                rows = budget_rows(ledger, defs, store=store, now=now, max_keys=1000)
            finally:
                ledger.close()
        else:
            budgets = Budgets(*defs, store=store)
            selections = [{**dims, "user_id": u} for u in users] or [dict(dims)]
            seen: set[tuple[str, str]] = set()
            for b in defs:
                missing = sorted({d for sel in selections for d in b.scope if d not in sel})
                if missing:
                    flags = " ".join(
                        "--user ID" if d == "user_id" else f"--dim {d}=VALUE" for d in missing
                    )
                    notes.append(
                        f"{b.name}: counted per {', '.join(missing)}; pass {flags}, or "
                        f"--all-scopes to list every scope key the ledger has seen"
                    )
                    continue
                for sel in selections:
                    call_dims = dict(sel)
                    for key, values in b.where.items():  # make the budget apply to it
                        call_dims.setdefault(key, min(values))
                    row = _status_row(budgets, b, call_dims, now)
                    if (
                        row.budget,
                        row.scope_key,
                    ) not in seen:  # unscoped: one row, not one per user
                        seen.add((row.budget, row.scope_key))
                        rows.append(row)
    finally:
        store.close()
    if fmt == "json":
        out = [budget_dict(r) for r in rows] + [{"note": n} for n in notes]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    console = _console()
    console.print(budget_table(rows, f"Budgets ({path}, store {url})"))
    for note in notes:
        console.print(note)


def _cmd_budget_set(
    name: str,
    *,
    config: str | None,
    limit_usd: str | None,
    limit_tokens: int | None,
    window: str,
    scope: str | None,
    mode: str,
    thresholds: Sequence[float] | None,
    timezone_name: str | None,
    where: Mapping[str, str],
    store_url: str | None,
) -> None:
    import typer

    from tokenward._budget_config import (
        BudgetConfig,
        budget_from_definition,
        definition_from_args,
        load_budget_config,
        open_budget_store,
        save_budget_config,
    )

    path = config or DEFAULT_BUDGETS_FILE
    cfg = load_budget_config(path) if os.path.exists(path) else BudgetConfig()
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
    budget_from_definition(name, definition, cli=True)  # errors name the flags, not the file
    created = name not in cfg.budgets
    cfg.budgets[name] = definition
    made_store = ""
    if store_url:
        cfg.store = store_url
        existed = "://" in store_url or os.path.exists(store_url)
        open_budget_store(store_url, create=True).close()  # `budget show` can read it now
        made_store = f", store {store_url}" + ("" if existed else " (created)")
    save_budget_config(path, cfg)
    typer.echo(f"{'added' if created else 'updated'} budget {name!r} in {path}{made_store}")


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


# Plain help text (click's layout): typer's rich panels print a `<bool>` type after every flag
# and treat `[...]` in help strings as markup.
_APP_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": None,
    "context_settings": {"max_content_width": 100},
}


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
        **_APP_SETTINGS,
    )

    @app.command("count")
    @_errors
    def count(
        text: str | None = typer.Argument(
            None,
            metavar="[TEXT]",
            help="The text to count, or a JSON list of chat messages; an existing file's path "
            "reads that file; - reads stdin.",
        ),
        file: str | None = typer.Option(
            None, "--file", "-F", metavar="PATH", help="Read the text from this file."
        ),
        model: str = typer.Option(
            "gpt-4o", "--model", "-m", metavar="MODEL", help="Model whose tokenizer to use."
        ),
    ) -> None:
        """Count the tokens of a text or a JSON chat transcript.

        tokenward count "hello world" --model gpt-4o
        """
        _cmd_count(text, file, model)

    @app.command("cost")
    @_errors
    def cost_(
        model: str = typer.Option(
            ..., "--model", "-m", metavar="MODEL", help="Model name (aliases and prefixes work)."
        ),
        input_tokens: int = typer.Option(
            0, "--input", metavar="N", help="Prompt tokens, including cached ones."
        ),
        output_tokens: int = typer.Option(
            0, "--output", metavar="N", help="Generated tokens, including reasoning."
        ),
        cache_read: int = typer.Option(
            0, "--cache-read", metavar="N", help="Prompt tokens read from the cache."
        ),
        cache_write: int = typer.Option(
            0, "--cache-write", metavar="N", help="Prompt tokens written to the 5-minute cache."
        ),
        cache_write_1h: int = typer.Option(
            0, "--cache-write-1h", metavar="N", help="Prompt tokens written to the 1-hour cache."
        ),
        reasoning: int = typer.Option(
            0, "--reasoning", metavar="N", help="Reasoning tokens (part of --output)."
        ),
        batch: bool = typer.Option(False, "--batch", help="Price at the provider's batch rate."),
        fmt: str = typer.Option(
            "table", "--format", "-f", metavar="table|json", help="Output format."
        ),
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

    models_app = typer.Typer(
        help="List the catalog (prices, windows, their source and date); `update` its prices.",
        add_completion=False,
    )

    def with_context(func: F) -> F:
        # typer injects the Context by the parameter's annotation, evaluated in this module,
        # which imports typer lazily: give it the class itself
        func.__annotations__["ctx"] = typer.Context
        return func

    @models_app.callback(invoke_without_command=True)
    @_errors
    @with_context
    def models(
        ctx: typer.Context,
        provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider."),
        search: str | None = typer.Option(
            None, "--search", "-s", help="Substring of the model name."
        ),
        fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
        calibration: bool = typer.Option(
            False,
            "--calibration",
            help="Show the estimator calibration learned in a ledger (ratio, accuracy over "
            "time) instead of the catalog.",
        ),
        db: str | None = typer.Option(
            None,
            "--db",
            metavar="PATH_OR_URL",
            help=f"With --calibration: ledger path or URL (default $TOKENWARD_DB or "
            f"{DEFAULT_LEDGER}).",
        ),
        days: int = typer.Option(
            14, "--days", help="With --calibration: days of accuracy history shown per key."
        ),
    ) -> None:
        """List the catalog: context windows, prices, their source and date."""
        if ctx.invoked_subcommand is not None:
            return
        if fmt not in ("table", "json"):
            raise _UsageProblem(f"--format {fmt!r}: choose table or json")
        if calibration:
            _cmd_models_calibration(db, provider, search, fmt, days)
            return
        if db is not None:
            raise _UsageProblem(
                "--db applies to --calibration: tokenward models --calibration --db PATH"
            )
        _cmd_models(provider, search, fmt)

    @models_app.command("update")
    @_errors
    def models_update(
        url: str | None = typer.Option(
            None, "--url", help="Where to fetch genai-prices data (default: its own update URL)."
        ),
        timeout: float = typer.Option(30.0, "--timeout", help="Seconds before giving up."),
    ) -> None:
        """Fetch genai-prices' current price data, validate it and cache it for later runs."""
        if timeout <= 0:
            raise _UsageProblem(f"--timeout must be > 0, got {timeout}")
        _cmd_models_update(url, timeout)

    app.add_typer(models_app, name="models")

    @app.command("report")
    @_errors
    def report(
        db: str | None = typer.Option(
            None,
            "--db",
            metavar="PATH_OR_URL",
            help=f"Ledger path or URL (default $TOKENWARD_DB or {DEFAULT_LEDGER}).",
        ),
        since: str | None = typer.Option(
            "30d", "--since", metavar="WHEN", help="7d, 12h, 2w or an ISO date."
        ),
        until: str | None = typer.Option(
            None, "--until", metavar="WHEN", help="7d, 12h or an ISO date (default now)."
        ),
        by: str = typer.Option(
            "model",
            "--by",
            metavar="DIMS",
            help="Comma-separated dimensions: user_id,model,agent,... or tag:KEY.",
        ),
        where: list[str] | None = typer.Option(  # noqa: B008
            None, "--where", metavar="KEY=VALUE", help="Filter (repeatable)."
        ),
        fmt: str = typer.Option(
            "table", "--format", "-f", metavar="FORMAT", help="table, json, csv or html."
        ),
        output: str | None = typer.Option(
            None, "--output", "-o", metavar="FILE", help="Write to a file instead of stdout."
        ),
        model: str | None = typer.Option(
            None, "--model", "-m", metavar="MODEL", help="Only this model."
        ),
        budgets_file: str | None = typer.Option(
            None,
            "--budgets",
            metavar="FILE",
            help="Budget definitions (TOML/JSON) whose utilization to show, recomputed from the "
            "ledger (not with -f csv).",
        ),
        budget_store: str | None = typer.Option(
            None,
            "--budget-store",
            metavar="URL",
            help="Read the --budgets' live status (with reservations) from this budget store.",
        ),
        whatif: list[str] | None = typer.Option(  # noqa: B008
            None,
            "--whatif",
            metavar="SCENARIO",
            help="Add a What-if row to -f html: model=NAME,cache-hit=0.8,batch (repeatable).",
        ),
    ) -> None:
        """Summarize the ledger: totals, breakdown by dimension, analytics."""
        _cmd_report(
            db, since, until, by, where, fmt, output, model, budgets_file, budget_store, whatif
        )

    @app.command("whatif")
    @_errors
    def whatif(
        db: str | None = typer.Option(
            None,
            "--db",
            metavar="PATH_OR_URL",
            help=f"Ledger path or URL (default $TOKENWARD_DB or {DEFAULT_LEDGER}).",
        ),
        model: str | None = typer.Option(
            None, "--model", "-m", metavar="MODEL", help="Re-price every chat call on this model."
        ),
        cache_hit: float | None = typer.Option(
            None, "--cache-hit", metavar="FRACTION", help="Share of prompt tokens read from cache."
        ),
        cache_write: float | None = typer.Option(
            None,
            "--cache-write",
            metavar="FRACTION",
            help="Share written to the cache (default: the uncached rest, where writes cost).",
        ),
        batch: bool = typer.Option(False, "--batch", help="Batch prices."),
        since: str | None = typer.Option(
            "30d", "--since", metavar="WHEN", help="7d, 12h, 2w or an ISO date."
        ),
        until: str | None = typer.Option(
            None, "--until", metavar="WHEN", help="7d, 12h or an ISO date (default now)."
        ),
        by: str = typer.Option(
            "model", "--by", metavar="DIMS", help="Comma-separated dimensions to break down by."
        ),
        where: list[str] | None = typer.Option(  # noqa: B008
            None, "--where", metavar="KEY=VALUE", help="Filter (repeatable)."
        ),
        fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help="table or json."),
    ) -> None:
        """What the recorded calls would have cost on another model, with cache hits or batch."""
        _cmd_whatif(db, model, cache_hit, cache_write, batch, since, until, by, where, fmt)

    @app.command("demo")
    @_errors
    def demo(
        db: str | None = typer.Option(
            None, "--db", metavar="PATH", help="SQLite file to write (default: a temporary file)."
        ),
        users: int = typer.Option(6, "--users", metavar="N", help="Number of simulated users."),
        seed: int = typer.Option(
            7, "--seed", metavar="N", help="Random seed (the session is deterministic)."
        ),
        budget: bool = typer.Option(
            True, "--budget/--no-budget", help="Add a budget that denies one call."
        ),
    ) -> None:
        """Run a realistic offline session through the Accountant and print the report."""
        _cmd_demo(db, users, seed, budget)

    app.add_typer(_budget_app(), name="budget")
    return app


def _budget_app() -> typer.Typer:
    """``tokenward budget show|set``."""
    import typer

    app = typer.Typer(
        help="Budget definitions (a TOML or JSON file) and their live status.",
        no_args_is_help=True,
        **_APP_SETTINGS,
    )
    config_help = f"Budgets file (default {DEFAULT_BUDGETS_FILE}; .toml or .json)."

    @app.command("show")
    @_errors
    def show(
        config: str | None = typer.Option(None, "--config", "-c", metavar="FILE", help=config_help),
        store: str | None = typer.Option(
            None,
            "--store",
            metavar="URL",
            help="Budget store: a SQLite path, postgresql://... or redis://... (default: the "
            "[store] url in the budgets file, then $TOKENWARD_BUDGET_STORE).",
        ),
        user: list[str] | None = typer.Option(  # noqa: B008
            None, "--user", "-u", metavar="ID", help="Show this user's counters (repeatable)."
        ),
        dim: list[str] | None = typer.Option(  # noqa: B008
            None,
            "--dim",
            metavar="KEY=VALUE",
            help="Another scope dimension, e.g. agent=support (repeatable).",
        ),
        name: list[str] | None = typer.Option(  # noqa: B008
            None, "--name", "-n", metavar="NAME", help="Only this budget (repeatable)."
        ),
        all_scopes: bool = typer.Option(
            False,
            "--all-scopes",
            help="One row per scope key the ledger has seen in each budget's current window.",
        ),
        db: str | None = typer.Option(
            None,
            "--db",
            metavar="PATH_OR_URL",
            help=f"Ledger for --all-scopes (default $TOKENWARD_DB or {DEFAULT_LEDGER}).",
        ),
        fmt: str = typer.Option(
            "table", "--format", "-f", metavar="table|json", help="Output format."
        ),
    ) -> None:
        """Show each budget's live status: spent, reserved, remaining, utilization, reset time."""
        if fmt not in ("table", "json"):
            raise _UsageProblem(f"--format {fmt!r}: choose table or json")
        _cmd_budget_show(
            config=config,
            store_url=store,
            users=user or (),
            dims=_parse_pairs(dim, "--dim"),
            names=name or (),
            all_scopes=all_scopes,
            db=db,
            fmt=fmt,
        )

    @app.command("set")
    @_errors
    def set_(
        name: str = typer.Argument(..., metavar="NAME", help="Budget name (unique in the file)."),
        limit_usd: str | None = typer.Option(
            None, "--limit-usd", metavar="USD", help="Limit in USD, e.g. 5."
        ),
        limit_tokens: int | None = typer.Option(
            None, "--limit-tokens", metavar="N", help="Limit in tokens."
        ),
        window: str = typer.Option(
            "day",
            "--window",
            "-w",
            metavar="WINDOW",
            help="request, conversation, day, week, month, or rolling 24h / 30m / 7d.",
        ),
        scope: str | None = typer.Option(
            None,
            "--scope",
            "-s",
            metavar="DIMS",
            help="Dimension(s) with their own counter: user_id or user_id,agent.",
        ),
        mode: str = typer.Option(
            "hard", "--mode", metavar="hard|soft", help="hard (deny) or soft (alert only)."
        ),
        threshold: list[float] | None = typer.Option(  # noqa: B008
            None,
            "--threshold",
            metavar="FRACTION",
            help="Alert threshold in (0, 1] (repeatable; default 0.5 0.75 0.9).",
        ),
        tz: str | None = typer.Option(
            None, "--timezone", metavar="ZONE", help="IANA zone for calendar windows."
        ),
        where: list[str] | None = typer.Option(  # noqa: B008
            None,
            "--where",
            metavar="KEY=VALUE",
            help="Apply only to calls with key=value (repeatable).",
        ),
        config: str | None = typer.Option(None, "--config", "-c", metavar="FILE", help=config_help),
        store: str | None = typer.Option(
            None,
            "--store",
            metavar="URL",
            help="Record the budget store in the file (a SQLite path is created if missing).",
        ),
    ) -> None:
        """Add or replace a budget definition in the budgets file (validated first)."""
        _cmd_budget_set(
            name,
            config=config,
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
