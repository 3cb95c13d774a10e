"""Adapters by name. Listing them imports none; loading one imports only its module."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from oncall.actions.errors import ConfigError

if TYPE_CHECKING:
    from oncall.actions.adapters.base import Adapter

ADAPTERS: dict[str, tuple[str, str, str]] = {
    "litellm-config": ("oncall.actions.adapters.litellm_config", "LiteLLMConfig",
                       "LiteLLM proxy config.yaml: repoint an alias, pin a deployment to a dated snapshot"),
    "litellm-admin": ("oncall.actions.adapters.litellm_admin", "LiteLLMAdmin",
                      "LiteLLM admin API (proxies with a database): update a deployment, set fallbacks"),
    "flagd-file": ("oncall.actions.adapters.flagd", "FlagdFile",
                   "OpenFeature flagd JSON flag file: switch a flag's default or a targeting rule's variant"),
    "langfuse-label": ("oncall.actions.adapters.langfuse", "LangfuseLabel",
                       "Langfuse prompt label: move `production` (or any label) to another version"),
    "index-alias": ("oncall.actions.adapters.index_alias", "IndexAlias",
                    "search-index alias (a JSON alias file, or Elasticsearch/OpenSearch): point it at another index"),
    "webhook": ("oncall.actions.adapters.webhook", "Webhook",
                "HTTP webhook: a configured request, for a deploy pipeline, a status page, anything else"),
}


def available() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, _, desc) in ADAPTERS.items()]


def adapter_class(name: str) -> type[Adapter]:
    if name not in ADAPTERS:
        raise ConfigError(f"unknown adapter {name!r} (adapters: {', '.join(ADAPTERS)})")
    module, cls, _ = ADAPTERS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ConfigError(f"adapter {name!r} cannot load: {exc}") from None
