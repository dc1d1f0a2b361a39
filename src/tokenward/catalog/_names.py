"""What a model name, a provider hint and a base URL say before any price data is consulted.

Pure functions, no price data, no imports beyond the standard library: provider ids (the
genai-prices ids: ``openai``, ``anthropic``, ``google``, ``aws``, ``azure``, ``mistral``,
``deepseek``, ``openrouter`` …), the prefixes and id shapes users send, local runtimes, the
provider a LangChain / LlamaIndex model class implies, and the tokenizer family of a name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = [
    "LOCAL_PROVIDERS",
    "Parsed",
    "is_local_url",
    "normalize_provider",
    "parse_name",
    "provider_for_class",
    "tokenizer_family",
]

# Provider spellings users send (LiteLLM prefixes, LangChain `init_chat_model` prefixes,
# OpenTelemetry names) -> the genai-prices provider id.
_PROVIDER_ALIASES = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure",
    "azure_ai": "azure",
    "azure_openai": "azure",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "vertexai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "aws": "aws",
    "aws.bedrock": "aws",
    "mistral": "mistral",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "codestral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "groq": "groq",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "x_ai": "x-ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
    "moonshot": "moonshotai",
    "moonshotai": "moonshotai",
    "zai": "zai",
    "novita": "novita",
    "huggingface": "huggingface",
}

#: Local and self-hosted runtimes: their calls cost nothing (tokens are still counted).
LOCAL_PROVIDERS = {
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "vllm": "vllm",
    "hosted_vllm": "vllm",
    "llamacpp": "llamacpp",
    "llama.cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "lmstudio": "lmstudio",
    "lm_studio": "lmstudio",
    "lm-studio": "lmstudio",
    "local": "local",
}

# Path segments that carry no provider ("models/gemini-2.5-pro", "bedrock/converse/...").
_NOISE = {"models", "converse", "invoke", "chat", "openrouter_chat"}
_BEDROCK_ID = re.compile(
    r"^(?:(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.)?"
    r"(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer|google|moonshotai)"
    r"\.[a-z0-9]"
)
_COLON_PROVIDER = re.compile(r"^([a-z][a-z0-9_.\-]*):(?!\d)(.+)$")
_KNOWN = set(_PROVIDER_ALIASES.values()) | set(LOCAL_PROVIDERS.values())


class Parsed:
    """A model name taken apart: the model reference, the provider it names and how."""

    __slots__ = ("local", "provider", "ref")

    def __init__(self, ref: str, provider: str | None, local: str | None) -> None:
        self.ref = ref  #: the model id to match, lower case, provider prefixes removed
        self.provider = provider  #: provider id the name implies, or None
        self.local = local  #: the local runtime the name implies ("ollama"...), or None

    def __repr__(self) -> str:
        return f"Parsed(ref={self.ref!r}, provider={self.provider!r}, local={self.local!r})"


def normalize_provider(provider: str | None) -> str | None:
    """The provider id for a user spelling (``"vertex_ai"`` -> ``"google"``), else lower case."""
    if provider is None:
        return None
    key = provider.strip().lower()
    if not key:
        return None
    return LOCAL_PROVIDERS.get(key) or _PROVIDER_ALIASES.get(key, key)


def parse_name(name: str) -> Parsed:
    """Split provider prefixes (``openai/``, ``vertex_ai/``, ``ollama/``, ``openai:``) off a name.

    Only known provider spellings are split off: ``meta-llama/Llama-3-8B`` stays whole. Bedrock
    ids (``us.anthropic.claude-…-v1:0``) imply ``aws`` and Vertex ``@`` versions ``google``.
    """
    ref = name.strip().lower()
    provider: str | None = None
    local: str | None = None
    match = _COLON_PROVIDER.match(ref)  # LangChain's init_chat_model("openai:gpt-5.4")
    if match and match.group(1) != "ft" and normalize_provider(match.group(1)) in _KNOWN:
        ref = match.group(2)
        provider = normalize_provider(match.group(1))
    while "/" in ref:
        head, tail = ref.split("/", 1)
        if head in _NOISE:
            pass
        elif provider is not None or local is not None:
            break  # after the provider: the rest is its model id ("openrouter/anthropic/...")
        elif head in LOCAL_PROVIDERS:
            local = LOCAL_PROVIDERS[head]
        elif head in _PROVIDER_ALIASES:
            provider = _PROVIDER_ALIASES[head]
        else:
            break
        ref = tail
    if provider in LOCAL_PROVIDERS.values():
        local, provider = local or provider, None
    if provider is None and _BEDROCK_ID.match(ref):
        provider = "aws"
    if provider is None and "@" in ref:
        provider = "google"
    return Parsed(ref, provider, local)


def is_local_url(base_url: str | None) -> bool:
    """Whether ``base_url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if not base_url:
        return False
    text = base_url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost") or host == "0.0.0.0":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ framework classes
# Class names of LangChain and LlamaIndex chat models, LLMs and embeddings -> provider id.
_CLASS_PROVIDERS = {
    # LangChain (langchain-openai, -anthropic, -aws, -google-*, -mistralai, -ollama, ...)
    "ChatOpenAI": "openai",
    "OpenAIEmbeddings": "openai",
    "AzureChatOpenAI": "azure",
    "AzureOpenAI": "azure",
    "AzureOpenAIEmbeddings": "azure",
    "AzureAIChatCompletionsModel": "azure",
    "ChatAnthropic": "anthropic",
    "AnthropicLLM": "anthropic",
    "ChatBedrock": "aws",
    "ChatBedrockConverse": "aws",
    "BedrockLLM": "aws",
    "BedrockEmbeddings": "aws",
    "ChatVertexAI": "google",
    "VertexAI": "google",
    "ChatAnthropicVertex": "google",
    "VertexAIEmbeddings": "google",
    "ChatGoogleGenerativeAI": "google",
    "GoogleGenerativeAI": "google",
    "GoogleGenerativeAIEmbeddings": "google",
    "ChatMistralAI": "mistral",
    "MistralAIEmbeddings": "mistral",
    "ChatDeepSeek": "deepseek",
    "ChatGroq": "groq",
    "ChatXAI": "x-ai",
    "ChatFireworks": "fireworks",
    "ChatTogether": "together",
    "ChatCohere": "cohere",
    "ChatPerplexity": "perplexity",
    "ChatOpenRouter": "openrouter",
    "ChatOllama": "ollama",
    "OllamaLLM": "ollama",
    "OllamaEmbeddings": "ollama",
    "ChatLlamaCpp": "llamacpp",
    "VLLM": "vllm",
    "VLLMOpenAI": "vllm",
    # LlamaIndex (llama-index-llms-*, llama-index-embeddings-*)
    "OpenAI": "openai",
    "OpenAIResponses": "openai",
    "OpenAIEmbedding": "openai",
    "AzureOpenAIEmbedding": "azure",
    "Anthropic": "anthropic",
    "Gemini": "google",
    "GoogleGenAI": "google",
    "GoogleGenAIEmbedding": "google",
    "Vertex": "google",
    "MistralAI": "mistral",
    "MistralAIEmbedding": "mistral",
    "DeepSeek": "deepseek",
    "Bedrock": "aws",
    "BedrockConverse": "aws",
    "Groq": "groq",
    "OpenRouter": "openrouter",
    "Ollama": "ollama",
    "OllamaEmbedding": "ollama",
    "LMStudio": "lmstudio",
    "LlamaCPP": "llamacpp",
    "Vllm": "vllm",
}


def provider_for_class(model: object) -> str | None:
    """The provider id a LangChain or LlamaIndex model class implies, or ``None``.

    ``model`` is a class name (``"ChatOpenAI"``), a class or an instance; for a class or an
    instance the whole MRO is searched, so subclasses map like their base. Generic classes
    (``OpenAILike``, fakes, anything unknown) give ``None``: pass ``base_url`` to
    :meth:`Catalog.lookup` instead. The ids are the ones ``Catalog.lookup(provider=...)``
    takes: ``openai``, ``azure``, ``anthropic``, ``aws``, ``google``, ``mistral``,
    ``deepseek``, ``groq``, ``openrouter`` … and the local runtimes ``ollama``, ``vllm``,
    ``llamacpp``, ``lmstudio`` (priced at $0).

    >>> provider_for_class("ChatBedrockConverse")
    'aws'
    """
    if isinstance(model, str):
        return _CLASS_PROVIDERS.get(model.rsplit(".", 1)[-1])
    cls = model if isinstance(model, type) else type(model)
    for klass in cls.__mro__:
        provider = _CLASS_PROVIDERS.get(klass.__name__)
        if provider is not None:
            return provider
    return None


# ------------------------------------------------------------------ tokenizer families
_O200K = re.compile(
    r"^(?:ft:)?(?:gpt-5|gpt-4\.1|gpt-4o|gpt-4\.5|gpt-oss|gpt-realtime|gpt-audio|chatgpt-4o|o\d)"
)
_CL100K = re.compile(r"^(?:ft:)?(?:gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada)")
_BEDROCK_VENDOR = re.compile(r"^(?:[a-z-]+\.)?openai\.")


def tokenizer_family(name: str) -> str | None:
    """The tiktoken encoding a model counts with exactly, from its name; ``None`` = estimate.

    Every ``gpt-5*``, ``o1``/``o3``/``o4``…, ``gpt-4.1*`` and ``gpt-4o*`` model (and
    gpt-4.5, gpt-oss, realtime/audio, fine-tunes of them) uses ``o200k_base``; older GPT-4 /
    GPT-3.5 and OpenAI embeddings ``cl100k_base``; every other family ``None``. Provider
    prefixes are ignored (``azure/gpt-5.4``, ``openai/gpt-5.4`` via OpenRouter).
    """
    ref = parse_name(name).ref
    ref = ref.rsplit("/", 1)[-1]
    ref = _BEDROCK_VENDOR.sub("", ref)
    if _O200K.match(ref):
        return "o200k_base"
    if _CL100K.match(ref):
        return "cl100k_base"
    return None
