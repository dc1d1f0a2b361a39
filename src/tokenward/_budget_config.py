"""Budget definitions in a file (TOML or JSON): load, validate, save.

The file holds named budget definitions and, optionally, where their counters live::

    # budgets.toml
    [store]
    url = ".tokenward/budgets.db"      # SQLite path, postgresql://..., redis://... or "memory"

    [budgets.per-user-daily]
    limit_usd = "5.00"                 # a string keeps money exact (numbers are accepted too)
    window = "day"                     # request | conversation | day | week | month
                                       # or rolling: 24h, 30m, 2d, 1w
    scope = "user_id"                  # or ["user_id", "agent"]; omit for one global counter
    mode = "hard"                      # or "soft" (alerts only)
    thresholds = [0.5, 0.75, 0.9]
    timezone = "UTC"

    [budgets.per-user-daily.overrides]
    vip = "50"

The JSON form is the same structure: ``{"store": {"url": ...}, "budgets": {"name": {...}}}``.
Files are validated with pydantic models (:class:`BudgetDefinition`, :class:`BudgetFile`) whose
errors name the file, the budget, the setting and the fix; each definition then builds a
:class:`~tokenward.budgets.Budget`. TOML is read with :mod:`tomllib` (Python 3.11+) or ``tomli``
and written with ``tomli-w`` (both in the ``cli`` extra).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tokenward.errors import ConfigurationError

__all__ = [
    "BudgetConfig",
    "BudgetDefinition",
    "BudgetFile",
    "budget_from_definition",
    "definition_from_args",
    "load_budget_config",
    "open_budget_store",
    "parse_window",
    "save_budget_config",
    "to_toml",
]

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAMED_WINDOWS = ("request", "conversation", "day", "week", "month")
_DIMENSION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_NANO = Decimal("1e-9")

#: How to fix each setting, in the file and on the command line (``tokenward budget set``).
_FIXES = {
    "limit_usd": ('limit_usd = "5.00"', "--limit-usd 5"),
    "limit_tokens": ("limit_tokens = 100000", "--limit-tokens 100000"),
    "window": ('window = "day" (or week, month, request, conversation, 24h, 30m)', "--window day"),
    "scope": ('scope = "user_id" (or ["user_id", "agent"])', "--scope user_id"),
    "where": ('[budgets.NAME.where] agent = "support"', "--where agent=support"),
    "mode": ('mode = "hard" (or "soft")', "--mode hard"),
    "thresholds": ("thresholds = [0.5, 0.75, 0.9]", "--threshold 0.5 --threshold 0.9"),
    "timezone": ('timezone = "Europe/Berlin"', "--timezone Europe/Berlin"),
    "overrides": ('[budgets.NAME.overrides] "user_id=vip" = "50"', ""),
    "missing": ('missing = "shared" (or "skip")', ""),
}


def _duration(value: str) -> timedelta | None:
    m = _DURATION.match(value)
    return None if m is None else timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


class BudgetDefinition(BaseModel):
    """One budget as written in a budgets file (the keyword arguments of ``Budget``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit_usd: Decimal | None = None
    limit_tokens: int | None = Field(default=None, strict=True, gt=0)
    window: str = "day"
    scope: str | list[str] | None = None
    where: dict[str, str | list[str]] | None = None
    mode: Literal["hard", "soft"] = "hard"
    thresholds: list[float] | None = None
    timezone: str | None = None
    overrides: dict[str, Decimal | int] | None = None
    missing: Literal["shared", "skip"] = "shared"

    @field_validator("limit_usd", mode="before")
    @classmethod
    def _money(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (str, int, float, Decimal, type(None))):
            raise ValueError("must be an amount in USD")
        if isinstance(v, float):
            return Decimal(repr(v))
        if isinstance(v, str):
            try:
                return Decimal(v.strip())
            except InvalidOperation:
                raise ValueError("must be an amount in USD") from None
        return v

    @field_validator("limit_usd")
    @classmethod
    def _positive(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and (not v.is_finite() or v < _NANO):
            raise ValueError("must be an amount greater than 0 (at least 0.000000001)")
        return v

    @field_validator("window", mode="before")
    @classmethod
    def _rolling(cls, v: Any) -> Any:
        return _window_text(v) if isinstance(v, timedelta) else v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        if v.strip() in _NAMED_WINDOWS:
            return v.strip()
        length = _duration(v)
        if length is None or length <= timedelta(0):
            raise ValueError(
                "must be request, conversation, day, week, month or a rolling length "
                "like 24h, 30m, 7d, 1w"
            )
        return v.strip()

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str | list[str] | None) -> str | list[str] | None:
        names = [v] if isinstance(v, str) else (v or [])
        bad = [n for n in names if not _DIMENSION.match(n)]
        if bad:
            raise ValueError(f"dimension names look like user_id or agent, not {bad[0]!r}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float] | None) -> list[float] | None:
        for t in v or ():
            if not 0 < t <= 1:
                raise ValueError(f"each threshold is a fraction in (0, 1] such as 0.9, not {t!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as UTC or Europe/Berlin") from None
        return v

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: dict[str, Decimal | int] | None) -> dict[str, Decimal | int] | None:
        for key, amount in (v or {}).items():
            if amount < 0:
                raise ValueError(f"the limit of {key!r} must be 0 or more")
        return v

    def budget_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Budget`` (windows parsed, defaults left to ``Budget``)."""
        kwargs = self.model_dump(exclude_none=True, exclude_defaults=True)
        if "limit_usd" in kwargs or self.limit_usd is not None:
            kwargs["limit_usd"] = self.limit_usd
        if "window" in kwargs:
            kwargs["window"] = parse_window(kwargs["window"])
        if isinstance(kwargs.get("scope"), list):
            kwargs["scope"] = tuple(kwargs["scope"])
        return kwargs


class _Store(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str


class BudgetFile(BaseModel):
    """A whole budgets file: ``[store]`` (optional) and ``[budgets.NAME]`` tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: _Store | None = None
    budgets: dict[str, BudgetDefinition] = Field(default_factory=dict)


def _describe(exc: ValidationError, *, where: str, name: str | None, cli: bool) -> str:
    """One sentence per problem: the file (or command), the budget, the setting and the fix."""
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        budget = name
        if not cli and len(loc) >= 2 and loc[0] == "budgets":
            budget, loc = loc[1], loc[2:]
        elif not cli and loc and loc[0] == "store":
            problems.append(f'{where}: [store] needs url = "PATH_OR_URL" ({err["msg"]})')
            continue
        elif not cli and loc and err["type"] == "extra_forbidden":
            problems.append(
                f"{where}: unknown section {loc[0]!r}; a budgets file has [store] and "
                f"[budgets.NAME] tables only"
            )
            continue
        setting = loc[0] if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(BudgetDefinition.model_fields)
            problems.append(
                f"{where}: budget {budget!r}: unknown setting {setting!r}; allowed: {allowed}"
            )
            continue
        if err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
            msg = f"must be {err['ctx']['expected']}"
        got = err.get("input")
        file_fix, flag_fix = _FIXES.get(setting, ("", ""))
        if cli:
            flag = "--" + setting.replace("_", "-").removesuffix("s")
            fix = f"e.g. {flag_fix}" if flag_fix else ""
            problems.append(f"{flag} {got!r}: {msg}" + (f"; {fix}" if fix else ""))
        else:
            fix = f"write e.g. {file_fix}" if file_fix else "fix the value"
            problems.append(
                f"{where}: budget {budget!r}: {setting} {msg} (got {got!r}); {fix} in {where}"
                + (f", or run `tokenward budget set {budget} {flag_fix}`" if flag_fix else "")
            )
    return "; ".join(problems)


def _validate_definition(
    name: str, definition: Any, *, where: str = "budget", cli: bool = False
) -> BudgetDefinition:
    if not isinstance(definition, Mapping):
        raise ConfigurationError(
            f"{where}: budget {name!r}: expected a table of settings, got {definition!r}"
        )
    try:
        return BudgetDefinition.model_validate(dict(definition))
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, where=where, name=name, cli=cli)) from None


@dataclass
class BudgetConfig:
    """Budget definitions (``name -> settings as written``) and an optional store URL."""

    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    store: str | None = None

    def build(self) -> list[Any]:
        """One validated :class:`~tokenward.budgets.Budget` per definition, in file order."""
        return [budget_from_definition(name, d) for name, d in self.budgets.items()]


def parse_window(value: Any) -> Any:
    """``"day"``/``"week"``/``"month"``/``"request"``/``"conversation"`` as is; a duration such
    as ``"24h"``, ``"30m"``, ``"2d"``, ``"1w"`` as a rolling ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return _duration(value) or value.strip()
    raise ConfigurationError(f"budget window must be a string like 'day' or '24h', got {value!r}")


def _window_text(window: Any) -> str:
    """The file form of a window (a rolling timedelta becomes ``"<n>s|m|h|d|w"``)."""
    if isinstance(window, timedelta):
        secs = int(window.total_seconds())
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if secs % size == 0:
                return f"{secs // size}{unit}"
        return f"{secs}s"
    return str(window)


def budget_from_definition(
    name: str, definition: Mapping[str, Any], *, where: str = "budget", cli: bool = False
) -> Any:
    """Validate one definition (pydantic) and build the :class:`~tokenward.budgets.Budget`.

    ``where`` names the file in error messages; ``cli=True`` phrases errors with the
    ``tokenward budget set`` flags instead.
    """
    from tokenward.budgets import Budget

    checked = _validate_definition(name, definition, where=where, cli=cli)
    kwargs = checked.budget_kwargs()
    if (checked.limit_usd is None) == (checked.limit_tokens is None):
        got = "both" if checked.limit_usd is not None else "neither"
        raise ConfigurationError(
            f"{'tokenward budget set' if cli else where}: budget {name!r} needs exactly one of "
            + ("--limit-usd or --limit-tokens" if cli else "limit_usd or limit_tokens")
            + f" (got {got})"
        )
    try:
        return Budget(name, **kwargs)
    except (ConfigurationError, TypeError) as exc:  # a rule the model does not restate
        raise ConfigurationError(f"{where}: budget {name!r}: {exc}") from None


def definition_from_args(
    *,
    limit_usd: Decimal | str | None = None,
    limit_tokens: int | None = None,
    window: str = "day",
    scope: str | None = None,
    mode: str = "hard",
    thresholds: tuple[float, ...] | None = None,
    timezone: str | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A definition dict from CLI-style arguments (money kept as an exact string)."""
    d: dict[str, Any] = {}
    if limit_usd is not None:
        d["limit_usd"] = str(limit_usd)
    if limit_tokens is not None:
        d["limit_tokens"] = limit_tokens
    d["window"] = window
    if scope:
        parts = [s.strip() for s in scope.split(",") if s.strip()]
        d["scope"] = parts[0] if len(parts) == 1 else parts
    d["mode"] = mode
    if thresholds is not None:
        d["thresholds"] = list(thresholds)
    if timezone:
        d["timezone"] = timezone
    if where:
        d["where"] = dict(where)
    return d


# ----------------------------------------------------------------------------- reading
def _is_toml(path: str) -> bool:
    return os.path.splitext(path)[1].lower() == ".toml"


def _toml_loads(text: str, path: str) -> dict[str, Any]:
    import importlib

    reader: Any = None
    for name in ("tomllib", "tomli"):  # tomllib: Python 3.11+; tomli: its 3.10 backport
        try:
            reader = importlib.import_module(name)
            break
        except ImportError:
            continue
    if reader is None:
        raise ConfigurationError(
            f"{path}: reading TOML needs Python 3.11+ or the 'tomli' package "
            f"(pip install tomli); or use a .json budgets file"
        )
    try:
        return dict(reader.loads(text))
    except reader.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None


def load_budget_config(path: str | os.PathLike[str]) -> BudgetConfig:
    """Read and validate a budgets file (``.toml``, otherwise JSON).

    Raises ``FileNotFoundError`` when missing and ``ConfigurationError`` (naming the file, the
    budget, the setting and the fix) when malformed.
    """
    p = os.fspath(path)
    with open(p, encoding="utf-8") as fh:
        text = fh.read()
    if _is_toml(p):
        raw = _toml_loads(text, p)
    else:
        try:
            raw = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{p}: expected a table with a 'budgets' section")
    if isinstance(raw.get("store"), str):  # `store = "url"` is accepted as a shorthand
        raw = {**raw, "store": {"url": raw["store"]}}
    try:
        parsed = BudgetFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, where=p, name=None, cli=False)) from None
    cfg = BudgetConfig(
        {str(k): dict(v) for k, v in raw.get("budgets", {}).items()},
        parsed.store.url if parsed.store else None,
    )
    for name, d in cfg.budgets.items():
        budget_from_definition(name, d, where=p)
    return cfg


# ----------------------------------------------------------------------------- writing
def _plain_data(value: Any) -> Any:
    """Settings as TOML/JSON values: money as exact strings, windows as ``"24h"``."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, timedelta):
        return _window_text(value)
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain_data(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain_data(v) for v in value]
    return value


def _document(config: BudgetConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if config.store:
        doc["store"] = {"url": config.store}
    doc["budgets"] = _plain_data(config.budgets)
    return doc


def to_toml(config: BudgetConfig) -> str:
    """The TOML text of ``config`` (written by ``tomli-w``)."""
    try:
        import tomli_w
    except ImportError:
        raise ConfigurationError(
            'writing TOML needs the tomli-w package: pip install "tokenward[cli]"; '
            "or use a .json budgets file"
        ) from None
    head = "# tokenward budget definitions (`tokenward budget set ...` writes this file)\n\n"
    return head + tomli_w.dumps(_document(config))


def save_budget_config(path: str | os.PathLike[str], config: BudgetConfig) -> None:
    """Validate every definition, then write ``config`` as TOML (``.toml``) or JSON (otherwise).

    The file is replaced atomically (written next to it, then renamed).
    """
    p = os.fspath(path)
    for name, d in config.budgets.items():
        budget_from_definition(name, d, where=p)
    if _is_toml(p):
        text = to_toml(config)
    else:
        text = json.dumps(_document(config), indent=2, ensure_ascii=False) + "\n"
    directory = os.path.dirname(os.path.abspath(p))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{p}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, p)


def open_budget_store(url: str, *, create: bool = False) -> Any:
    """A budget store from a URL (``memory://``, ``sqlite:///path``, ``postgresql://...``,
    ``redis://...`` or a third-party scheme: ``tokenward.budgets.open_budget_store``), or a
    SQLite file path. Drivers are imported only when needed.

    A plain SQLite path must exist unless ``create`` (so a typo does not read an empty store).
    """
    from tokenward import budgets as _b

    u = url.strip()
    if u in ("memory", ":memory:"):
        return _b.MemoryBudgetStore()
    if "://" in u:
        return _b.open_budget_store(u)
    if not os.path.exists(u):
        if not create:
            raise ConfigurationError(
                f"no budget store at {u}; pass --store PATH_OR_URL (the SQLite file your app's "
                f"Budgets use, postgresql://... or redis://...), or create it with "
                f"`tokenward budget set NAME ... --store {u}`"
            )
        parent = os.path.dirname(os.path.abspath(u))
        os.makedirs(parent, exist_ok=True)
    return _b.SQLiteBudgetStore(u)
