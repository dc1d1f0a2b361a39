"""Model catalog: context windows, max output, exact prices (USD per 1M tokens) and name resolution.

>>> from tokenward.catalog import default_catalog
>>> default_catalog().get("openai/gpt-4o-2024-08-06").name
'gpt-4o'
"""

from tokenward.catalog._catalog import Catalog, default_catalog
from tokenward.catalog._models import ModelInfo, PricePeriod, Prices, PriceTier

__all__ = ["Catalog", "ModelInfo", "PricePeriod", "PriceTier", "Prices", "default_catalog"]
