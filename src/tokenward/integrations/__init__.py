"""Framework adapters.

Each subpackage adapts one framework to the accounting core and imports that
framework at import time, raising :class:`tokenward.errors.IntegrationUnavailableError`
(naming the extra to install) when it is missing:

* ``tokenward.integrations.langchain`` (``pip install "tokenward[langchain]"``);
  also reachable as ``tokenward.langchain``.
* ``tokenward.integrations.llama_index`` (``pip install "tokenward[llama-index]"``).

Nothing here is imported by ``import tokenward``; adapters hold no accounting
logic of their own.
"""
