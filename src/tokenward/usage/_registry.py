"""The usage-shape registry: how to recognize each provider's usage payload, and its parser.

A shape is recognized by its *markers*: groups of keys, each group needing at least one
key present (not ``None``) in the payload. When several shapes are recognized, the one
with the highest *rank* wins; registration order never matters:

* ``GENERIC`` (0): keys every provider means the same way (plain ``input_tokens`` /
  ``output_tokens``, LangChain's ``UsageMetadata``);
* ``PROVIDER`` (1): one provider's own keys (``prompt_tokens``, ``promptTokenCount``…);
* ``REFINED`` (2): a shape above plus keys that change how it reads (Anthropic's cache
  keys beside ``input_tokens``, DeepSeek's cache fields beside ``prompt_tokens``);
* ``REPORTED_COST`` (3): a shape above plus a cost the provider reported (OpenRouter).

Two shapes of the same rank recognized in one payload make it ambiguous: that is an
error naming both, never a silent pick. A payload may also sit under an envelope the
shape declares (``usage``, ``usageMetadata``, ``metadata.usage``…); those are provider
response layouts, never framework containers: adapters hand the core the provider's
usage object themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tokenward.errors import UsageParseError
from tokenward.usage._fields import mapping_of

if TYPE_CHECKING:
    from tokenward.usage._record import Usage

__all__ = [
    "GENERIC",
    "PROVIDER",
    "REFINED",
    "REPORTED_COST",
    "UsageShape",
    "parse_usage",
    "register_shape",
    "usage_shapes",
]

GENERIC: Final = 0
PROVIDER: Final = 1
REFINED: Final = 2
REPORTED_COST: Final = 3

Parser = Callable[[Mapping[str, Any]], "Usage"]


@dataclass(frozen=True)
class UsageShape:
    """One provider usage shape: how to recognize it and how to read it."""

    name: str
    #: one line naming the providers and APIs that send this shape
    summary: str
    #: groups of keys; the shape is recognized when every group has a key present
    markers: tuple[tuple[str, ...], ...]
    rank: int
    parse: Parser
    #: the ``Usage.from_<family>`` methods that read this shape (generic shapes: all of them)
    families: tuple[str, ...]
    #: where the usage object sits inside a provider response (``("usage",)``…)
    paths: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        """The shape's name and the keys that recognize it, for error messages."""
        return f"{self.name} ({' + '.join('/'.join(group) for group in self.markers)})"


class _View:
    """The shapes one parser considers, indexed for recognition (built once per family)."""

    __slots__ = ("by_first_key", "paths_by_first_key", "shapes", "unrivalled")

    def __init__(self, shapes: list[UsageShape]) -> None:
        self.shapes = tuple(sorted(shapes, key=lambda s: (-s.rank, s.name)))
        by_key: dict[str, list[tuple[UsageShape, tuple[tuple[str, ...], ...]]]] = {}
        by_envelope: dict[str, list[tuple[str, ...]]] = {}
        for shape in self.shapes:
            for key in shape.markers[0]:
                by_key.setdefault(key, []).append((shape, shape.markers[1:]))
            for path in shape.paths:
                if path not in by_envelope.get(path[0], ()):
                    by_envelope.setdefault(path[0], []).append(path)
        #: a key of a shape's first marker group -> the shapes it may start (with their
        #: other marker groups, still to check)
        self.by_first_key = {k: tuple(v) for k, v in by_key.items()}
        #: the first key of an envelope path -> the paths starting with it
        self.paths_by_first_key = {k: tuple(sorted(v)) for k, v in by_envelope.items()}
        #: the one shape ranked above all others, if any: once recognized, nothing can beat it
        top = self.shapes[:2]
        self.unrivalled = top[0] if len(top) == 1 or top[0].rank > top[1].rank else None


_lock = threading.Lock()
_shapes: dict[str, UsageShape] = {}
_views: dict[str | None, _View] = {}  # family (None: every shape) -> its view


def register_shape(
    name: str,
    *,
    summary: str,
    markers: Sequence[Sequence[str]],
    rank: int,
    families: Iterable[str] = (),
    paths: Iterable[Sequence[str]] = (("usage",),),
) -> Callable[[Parser], Parser]:
    """Register ``parse`` (the decorated function) as the reader of one usage shape.

    ``parse`` receives the usage mapping itself (the envelope already removed) and returns
    a :class:`~tokenward.usage.Usage`, raising :class:`~tokenward.errors.UsageParseError`
    naming the field on bad input. Adding a provider is one such function plus its test.
    """
    groups = tuple(tuple(group) for group in markers)
    envelopes = tuple(tuple(path) for path in paths)
    if not groups or not all(groups) or not all(envelopes):
        raise ValueError(f"usage shape {name!r} needs non-empty marker groups and paths")

    def add(parse: Parser) -> Parser:
        shape = UsageShape(
            name=name,
            summary=summary,
            markers=groups,
            rank=rank,
            parse=parse,
            families=tuple(families),
            paths=envelopes,
        )
        with _lock:
            if name in _shapes:
                raise ValueError(f"usage shape {name!r} is already registered")
            _shapes[name] = shape
            _views.clear()
        return parse

    return add


def usage_shapes() -> tuple[UsageShape, ...]:
    """Every registered shape, best rank first (then by name)."""
    return _view(None).shapes


def parse_usage(payload: Any, family: str | None = None) -> Usage:
    """Recognize ``payload``'s shape (among ``family``'s when given) and parse it.

    ``payload`` is the usage object itself or a provider response holding it under one of
    the shapes' envelope paths.
    """
    view = _views.get(family) or _view(family)
    data = payload if type(payload) is dict else mapping_of(payload)
    if data is None:
        raise UsageParseError(
            f"usage must be an object (a mapping or the provider's SDK object), got "
            f"{type(payload).__name__}; pass the provider's usage payload",
            field=None,
        )
    shape = _recognize(data, view)
    if shape is None:
        data, shape = _under_envelope(data, view)
    if shape is None:
        raise _not_found(payload, data, family, view.shapes)
    return shape.parse(data)


def _view(family: str | None) -> _View:
    view = _views.get(family)
    if view is None:
        with _lock:
            view = _View(
                [
                    s
                    for s in _shapes.values()
                    if family is None or family in s.families or s.rank == GENERIC
                ]
            )
            _views[family] = view
    return view


def _recognize(data: Mapping[str, Any], view: _View) -> UsageShape | None:
    """The best-ranked shape whose every marker group has a key present in ``data``."""
    found: UsageShape | None = None
    tie: UsageShape | None = None
    for key, value in data.items():
        starts = view.by_first_key.get(key) if value is not None else None
        if starts is None:
            continue
        for shape, other_groups in starts:
            if found is not None and (shape.rank < found.rank or shape is found or shape is tie):
                continue
            if other_groups and not _all_present(data, other_groups):
                continue
            if found is None or shape.rank > found.rank:
                found, tie = shape, None
            else:
                tie = shape
        if found is not None and found is view.unrivalled:
            break
    if tie is not None and found is not None:
        raise _ambiguous(found, tie)
    return found


def _all_present(data: Mapping[str, Any], groups: tuple[tuple[str, ...], ...]) -> bool:
    """Whether every group has a key present (not None) in ``data``."""
    for group in groups:
        for key in group:
            if data.get(key) is not None:
                break
        else:
            return False
    return True


def _under_envelope(
    data: Mapping[str, Any], view: _View
) -> tuple[Mapping[str, Any], UsageShape | None]:
    """The usage object under one of the envelope paths present in ``data``, and its shape."""
    found: tuple[Mapping[str, Any], UsageShape] | None = None
    for key in data:
        for path in view.paths_by_first_key.get(key, ()):
            inner: Mapping[str, Any] | None = data
            for step in path:
                inner = mapping_of(inner.get(step)) if inner is not None else None
            shape = _recognize(inner, view) if inner is not None else None
            if shape is None or inner is None:
                continue
            if found is not None and found[0] is not inner:
                raise _ambiguous(found[1], shape)
            found = (inner, shape)
    return found if found is not None else (data, None)


def _ambiguous(first: UsageShape, second: UsageShape) -> UsageParseError:
    a, b = sorted((first, second), key=lambda s: s.name)
    return UsageParseError(
        f"ambiguous usage payload: it has keys of both {a.describe()} and {b.describe()}; "
        "pass the provider's usage object itself, or call its Usage.from_<provider> parser",
        field=None,
    )


def _not_found(
    payload: Any,
    data: Mapping[str, Any],
    family: str | None,
    shapes: tuple[UsageShape, ...],
) -> UsageParseError:
    keys = sorted(str(k) for k in data)[:12]
    known = "; ".join(s.describe() for s in shapes)
    what = "token usage" if family is None else f"{family} usage"
    families = sorted({f for s in _shapes.values() for f in s.families})
    parsers = "/".join(f"from_{f}" for f in families)
    # the field a caller of Usage.from_<family> most likely left out: the first marker of
    # the family's most basic shape
    field = None
    if family is not None:
        own = [s for s in shapes if family in s.families] or list(shapes)
        basic = min(own, key=lambda s: (s.rank, s.name))
        field = basic.markers[0][0]
    return UsageParseError(
        f"could not find {what} in {type(payload).__name__} (keys: {', '.join(keys) or 'none'}); "
        f"known usage shapes: {known}. Pass the provider's usage object, or call "
        f"Usage.{parsers} directly",
        field=field,
    )
