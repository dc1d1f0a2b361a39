"""Token counting: exact tiktoken counts, the OpenAI chat/tool/image formulas, and a
calibrated content-aware estimator for models without a local tokenizer.

Exact vs formula vs estimate:

* ``count_text`` on an OpenAI model: exact (tiktoken ``o200k_base``/``cl100k_base``).
* ``count_messages`` on an OpenAI model: exact for text conversations (the cookbook chat
  formula matches the API's ``prompt_tokens``); tool definitions, tool calls, images and
  documents add *formula* terms (reverse-engineered or published by the provider).
* Anything on a model without a local tokenizer (Claude, Gemini, Llama...) or when the BPE
  file cannot be loaded: estimate, ``exact=False``, corrected per model by a ``Calibrator``.
"""

from tokenward.counting._api import count_messages, count_text, get_counter, tokenizer_for_model
from tokenward.counting._calibrator import Calibrator, default_calibrator
from tokenward.counting._counter import EstimatorCounter, TiktokenCounter, TokenCount, TokenCounter
from tokenward.counting._estimator import estimate_tokens
from tokenward.counting._functions import render_functions
from tokenward.counting._images import (
    DOCUMENT_TOKENS_PER_PAGE,
    document_tokens,
    image_size_from_bytes,
    image_size_from_data_url,
    image_tokens,
)
from tokenward.counting._loader import encoding_source, get_encoding

__all__ = [
    "DOCUMENT_TOKENS_PER_PAGE",
    "Calibrator",
    "EstimatorCounter",
    "TiktokenCounter",
    "TokenCount",
    "TokenCounter",
    "count_messages",
    "count_text",
    "default_calibrator",
    "document_tokens",
    "encoding_source",
    "estimate_tokens",
    "get_counter",
    "get_encoding",
    "image_size_from_bytes",
    "image_size_from_data_url",
    "image_tokens",
    "render_functions",
    "tokenizer_for_model",
]
