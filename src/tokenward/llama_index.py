"""Short import path for the LlamaIndex integration: ``from tokenward.llama_index import ...``.

See :mod:`tokenward.integrations.llama_index` for which piece to use when.
"""

from tokenward.integrations.llama_index import *  # noqa: F403
from tokenward.integrations.llama_index import __all__  # noqa: F401
