"""Reading one value out of a provider payload: token counts, money, nested objects.

Every reader names the payload field it read, so a malformed payload raises a
:class:`~tokenward.errors.UsageParseError` that says which field is wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from tokenward.errors import UsageParseError

__all__ = ["EMPTY", "count", "mapping_of", "money", "sub"]

#: what :func:`sub` returns for an absent nested object: reads of it give None
EMPTY: Mapping[str, Any] = MappingProxyType({})
_SCALARS = (str, bytes, int, float, bool, list, tuple, Decimal)


def mapping_of(obj: Any) -> Mapping[str, Any] | None:
    """``obj`` as a read-only mapping of its fields, ``None`` for scalars and lists.

    Dicts are used as they are. SDK objects (the OpenAI, Anthropic, Cohere, Mistral and
    google-genai clients return pydantic models) are read through their attributes,
    shallowly, without serializing the whole response; a pydantic model's extra fields
    (OpenRouter's ``cost`` on an OpenAI SDK object) are included.
    """
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj
    if obj is None or isinstance(obj, _SCALARS):
        return None
    if getattr(obj, "__pydantic_fields_set__", None) is not None:  # a pydantic v2 model
        extra = getattr(obj, "__pydantic_extra__", None)
        fields: dict[str, Any] = obj.__dict__
        return {**fields, **extra} if extra else fields
    for name in ("model_dump", "to_dict"):  # pydantic-v1-style and hand-written SDK objects
        method = getattr(obj, name, None)
        if callable(method):
            data = method()
            if isinstance(data, Mapping):
                return data
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    values = getattr(obj, "__dict__", None)
    return values if isinstance(values, dict) else None


def sub(data: Mapping[str, Any], key: str, field: str) -> Mapping[str, Any]:
    """The nested object at ``data[key]`` as a mapping (:data:`EMPTY` when absent)."""
    value = data.get(key)
    if value is None:
        return EMPTY
    if type(value) is dict:
        return value
    mapping = mapping_of(value)
    if mapping is None:
        raise UsageParseError(
            f"usage field {field!r} must be an object, got {value!r}; "
            "pass the provider's usage payload unchanged",
            field=field,
        )
    return mapping


def count(value: Any, field: str) -> int:
    """One token count: ``None`` is 0; an int, integral float or digit string >= 0."""
    if type(value) is int and value >= 0:
        return value
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _bad(field, f"must be a token count, got {value!r}")
    if isinstance(value, int):
        result = int(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise _bad(field, f"must be a whole number, got {value!r}")
        result = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise _bad(field, f"must be a non-negative integer, got {value!r}")
        result = int(text)
    else:
        raise _bad(field, f"must be a token count, got {type(value).__name__}")
    if result < 0:
        raise _bad(field, f"must be >= 0, got {result}")
    return result


def money(value: Any, field: str) -> Decimal:
    """An amount of USD the provider reported: a number or numeric string, finite, >= 0.

    A float is read through its shortest repr (``0.95`` -> ``Decimal("0.95")``), the value
    the provider's JSON carried, not its binary approximation.
    """
    if isinstance(value, bool):
        raise _bad(field, f"must be an amount of USD, got {value!r}")
    try:
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, (int, float)):
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        elif isinstance(value, str):
            amount = Decimal(value.strip())
        else:
            raise _bad(field, f"must be an amount of USD, got {type(value).__name__}")
    except InvalidOperation:
        raise _bad(field, f"must be an amount of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise _bad(field, f"must be a finite amount >= 0, got {value!r}")
    return amount


def _bad(field: str, problem: str) -> UsageParseError:
    return UsageParseError(
        f"usage field {field!r} {problem}; pass the provider's usage payload unchanged",
        field=field,
    )
