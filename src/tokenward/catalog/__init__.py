"""Model catalog: prices (genai-prices + tokenward's overlay), context windows, name resolution.

>>> from tokenward.catalog import default_catalog
>>> default_catalog().get("openai/gpt-4o-2024-08-06").name
'gpt-4o'
"""

from tokenward.catalog._catalog import Catalog, default_catalog
from tokenward.catalog._models import ModelInfo, PricePeriod, Prices, PriceTier
from tokenward.catalog._names import provider_for_class, tokenizer_family

__all__ = [
    "Catalog",
    "ModelInfo",
    "PricePeriod",
    "PriceTier",
    "Prices",
    "default_catalog",
    "provider_for_class",
    "tokenizer_family",
]
