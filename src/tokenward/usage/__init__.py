"""Usage: one normalized record of a model call's tokens, parsed from every provider's payload.

:class:`Usage` is the record. Each provider's usage shape has one small parser, registered
with the keys that recognize it (:func:`usage_shapes` lists them, :func:`register_shape`
adds one); ``Usage.from_any`` recognizes the shape, ``Usage.from_openai`` & co. read one
provider's shapes.
"""

from tokenward.usage._record import TOKEN_FIELDS, Usage
from tokenward.usage._registry import UsageShape, register_shape, usage_shapes
from tokenward.usage._shapes import provider_cost

__all__ = [
    "TOKEN_FIELDS",
    "Usage",
    "UsageShape",
    "provider_cost",
    "register_shape",
    "usage_shapes",
]
