"""Token counting: exact tokenizers where we have one, a calibrated estimate elsewhere.

Exact vs formula vs estimate:

* OpenAI models: exact (tiktoken ``o200k_base``/``cl100k_base``, shipped in the wheel; nothing
  is ever downloaded). ``count_messages`` is exact for text conversations (the chat formula
  matches the API's ``prompt_tokens``); tool definitions, tool calls, images and documents
  add *formula* terms (published by the provider or reverse-engineered).
* Mistral models: exact through mistral-common (``tokenward[mistral]``), chat template and
  tools included.
* Any model you register a tokenizer for (:func:`register_tokenizer`: a ``tokenizer.json``,
  a mistral-common tokenizer, a callable, or a provider's counting endpoint such as
  :class:`AnthropicCountTokens` / :class:`GeminiCountTokens`).
* Anything else (Claude, Gemini, Llama... without a registration): its o200k count corrected
  per (provider, model, content class) by a :class:`Calibrator`, flagged ``exact=False``.
"""

from tokenward.counting._api import (
    count_messages,
    count_text,
    get_counter,
    tokenizer_for_model,
    tokenizer_names,
)
from tokenward.counting._calibrator import (
    AccuracyPoint,
    CalibrationRecord,
    Calibrator,
    RatioSnapshot,
    default_calibrator,
    merge_records,
)
from tokenward.counting._classes import CONTENT_CLASSES, content_class
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
from tokenward.counting._loader import BUNDLED_ENCODINGS, encoding_source, get_encoding
from tokenward.counting._mistral import MistralCounter
from tokenward.counting._pdf import pdf_page_count
from tokenward.counting._persist import CalibrationSync, read_calibration
from tokenward.counting._provider import AnthropicCountTokens, GeminiCountTokens, ProviderCounter
from tokenward.counting._registry import (
    is_registered,
    register_tokenizer,
    registered_tokenizers,
    unregister_tokenizer,
)
from tokenward.counting._text_tokenizer import TextTokenizerCounter

__all__ = [
    "BUNDLED_ENCODINGS",
    "CONTENT_CLASSES",
    "DOCUMENT_TOKENS_PER_PAGE",
    "AccuracyPoint",
    "AnthropicCountTokens",
    "CalibrationRecord",
    "CalibrationSync",
    "Calibrator",
    "EstimatorCounter",
    "GeminiCountTokens",
    "MistralCounter",
    "ProviderCounter",
    "RatioSnapshot",
    "TextTokenizerCounter",
    "TiktokenCounter",
    "TokenCount",
    "TokenCounter",
    "content_class",
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
    "is_registered",
    "merge_records",
    "pdf_page_count",
    "read_calibration",
    "register_tokenizer",
    "registered_tokenizers",
    "render_functions",
    "tokenizer_for_model",
    "tokenizer_names",
    "unregister_tokenizer",
]
