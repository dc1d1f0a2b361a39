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
Every definition is validated by constructing a :class:`~tokenward.budgets.Budget`, so a bad
file fails with the same clear message as bad code. TOML is read with :mod:`tomllib`
(Python 3.11+) or the ``tomli`` package when installed; without either only JSON can be read.
TOML is written by this module (a small, escaped subset: tables, strings, numbers, booleans and
arrays), so no writer dependency is needed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tokenward.errors import ConfigurationError

__all__ = [
    "BudgetConfig",
    "budget_from_definition",
    "definition_from_args",
    "load_budget_config",
    "open_budget_store",
    "parse_window",
    "save_budget_config",
    "to_toml",
]

#: Keys a budget definition may contain (the keyword arguments of ``Budget``).
DEFINITION_KEYS = (
    "limit_usd",
    "limit_tokens",
    "window",
    "scope",
    "where",
    "mode",
    "thresholds",
    "timezone",
    "overrides",
    "missing",
)
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class BudgetConfig:
    """Budget definitions (``name -> keyword arguments of Budget``) and an optional store URL."""

    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    store: str | None = None

    def build(self) -> list[Any]:
        """One validated :class:`~tokenward.budgets.Budget` per definition, in file order."""
        return [budget_from_definition(name, d) for name, d in self.budgets.items()]


def parse_window(value: Any) -> Any:
    """``"day"``/``"week"``/``"month"``/``"request"``/``"conversation"`` as is; a duration such
    as ``"24h"``, ``"30m"``, ``"2d"``, ``"1w"`` (or a number of seconds) as a rolling
    ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return value.strip()
    raise ConfigurationError(f"budget window must be a string like 'day' or '24h', got {value!r}")


def _window_text(window: Any) -> str:
    """The file form of a window (a rolling timedelta becomes ``"<n>s|m|h|d"``)."""
    if isinstance(window, timedelta):
        secs = int(window.total_seconds())
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if secs % size == 0:
                return f"{secs // size}{unit}"
        return f"{secs}s"
    return str(window)


def budget_from_definition(name: str, definition: Mapping[str, Any]) -> Any:
    """Validate one definition by building the :class:`~tokenward.budgets.Budget` it describes."""
    from tokenward.budgets import Budget

    if not isinstance(definition, Mapping):
        raise ConfigurationError(
            f"budget {name!r}: expected a table of settings, got {definition!r}"
        )
    unknown = sorted(set(definition) - set(DEFINITION_KEYS))
    if unknown:
        raise ConfigurationError(
            f"budget {name!r}: unknown setting(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(DEFINITION_KEYS)}"
        )
    kwargs: dict[str, Any] = dict(definition)
    if "limit_usd" in kwargs:
        v = kwargs["limit_usd"]
        if isinstance(v, bool) or not isinstance(v, (str, int, float, Decimal)):
            raise ConfigurationError(f"budget {name!r}: limit_usd must be a number, got {v!r}")
        kwargs["limit_usd"] = Decimal(str(v)) if not isinstance(v, Decimal) else v
    if "window" in kwargs:
        kwargs["window"] = parse_window(kwargs["window"])
    if "scope" in kwargs and isinstance(kwargs["scope"], list):
        kwargs["scope"] = tuple(kwargs["scope"])
    if "overrides" in kwargs and isinstance(kwargs["overrides"], Mapping):
        kwargs["overrides"] = {
            k: (Decimal(str(v)) if isinstance(v, float) else v)
            for k, v in kwargs["overrides"].items()
        }
    try:
        return Budget(name, **kwargs)
    except TypeError as exc:  # e.g. a list where a string was expected
        raise ConfigurationError(f"budget {name!r}: {exc}") from None


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

    Raises ``FileNotFoundError`` when missing and ``ConfigurationError`` (naming the file and
    the budget) when malformed.
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
    unknown = sorted(set(raw) - {"budgets", "store"})
    if unknown:
        raise ConfigurationError(
            f"{p}: unknown section(s) {', '.join(unknown)}; expected 'budgets' and 'store'"
        )
    budgets = raw.get("budgets", {})
    if not isinstance(budgets, dict):
        raise ConfigurationError(f"{p}: 'budgets' must be a table of named budgets")
    store = raw.get("store")
    url: str | None = None
    if isinstance(store, dict):
        url = store.get("url")
    elif isinstance(store, str):
        url = store
    elif store is not None:
        raise ConfigurationError(f"{p}: 'store' must be a table with a 'url'")
    if url is not None and not isinstance(url, str):
        raise ConfigurationError(f"{p}: store url must be a string")
    cfg = BudgetConfig(
        {str(k): dict(v) if isinstance(v, dict) else v for k, v in budgets.items()}, url
    )
    for name, d in cfg.budgets.items():
        try:
            budget_from_definition(name, d)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{p}: {exc}") from None
    return cfg


# ----------------------------------------------------------------------------- writing
def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"cannot write non-finite number {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        return _toml_str(str(value))
    if isinstance(value, timedelta):
        return _toml_str(_window_text(value))
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigurationError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def to_toml(config: BudgetConfig) -> str:
    """The TOML text of ``config`` (tables for each budget, sub-tables for where/overrides)."""
    lines = ["# tokenward budget definitions (tokenward budget set ... writes this file)"]
    if config.store:
        lines += ["", "[store]", f"url = {_toml_str(config.store)}"]
    for name, d in config.budgets.items():
        head = f"budgets.{_toml_key(name)}"
        lines += ["", f"[{head}]"]
        subs: list[tuple[str, Mapping[str, Any]]] = []
        for key in DEFINITION_KEYS:
            if key not in d or d[key] is None:
                continue
            value = d[key]
            if isinstance(value, Mapping):
                subs.append((key, value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, table in subs:
            lines += ["", f"[{head}.{key}]"]
            for k, v in table.items():
                if isinstance(v, (set, frozenset)):
                    v = sorted(v)
                lines.append(f"{_toml_key(str(k))} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return _window_text(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


def save_budget_config(path: str | os.PathLike[str], config: BudgetConfig) -> None:
    """Validate every definition, then write ``config`` as TOML (``.toml``) or JSON (otherwise).

    The file is replaced atomically (written next to it, then renamed).
    """
    p = os.fspath(path)
    for name, d in config.budgets.items():
        budget_from_definition(name, d)
    if _is_toml(p):
        text = to_toml(config)
    else:
        payload: dict[str, Any] = {}
        if config.store:
            payload["store"] = {"url": config.store}
        payload["budgets"] = _jsonable(config.budgets)
        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    directory = os.path.dirname(os.path.abspath(p))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{p}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, p)


def open_budget_store(url: str) -> Any:
    """A budget store from a URL: ``memory``, ``redis://...``, ``postgresql://...``, or a SQLite
    path (``sqlite:///path`` or a plain path). Drivers are imported only when needed."""
    from tokenward import budgets as _b

    u = url.strip()
    if u in ("memory", "memory://", ":memory:"):
        return _b.MemoryBudgetStore()
    scheme = u.split("://", 1)[0].lower() if "://" in u else ""
    if scheme in ("redis", "rediss", "unix"):
        return _b.RedisBudgetStore(u)
    if scheme.startswith("postgres"):
        return _b.PostgresBudgetStore(u)
    if scheme == "sqlite":
        path = u.split("://", 1)[1]
        if path.startswith("/") and not path.startswith("//"):
            path = path[1:] or ":memory:"
        elif path.startswith("//"):
            path = path[1:]
        return _b.SQLiteBudgetStore(path)
    if scheme:
        raise ConfigurationError(
            f"budget store {url!r}: unknown scheme {scheme!r}; use a SQLite path, "
            f"sqlite:///path, postgresql://..., redis://... or memory"
        )
    if not os.path.exists(u):
        raise ConfigurationError(
            f"no budget store at {u}; pass --store PATH_OR_URL (a SQLite file the app writes, "
            f"postgresql://... or redis://...)"
        )
    return _b.SQLiteBudgetStore(u)
