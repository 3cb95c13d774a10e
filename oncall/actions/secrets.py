"""Secrets for actions come only from environment variables, and never leave the process.

Every secret an adapter reads goes through `secret()`, which remembers the value so `scrub()` can
take it out of anything that is printed, planned or audited, on top of the project's redactor
(oncall/redact.py) that catches credential-shaped strings we never saw.
"""

from __future__ import annotations

import os
from typing import Any

from oncall.actions.errors import ConfigError
from oncall.redact import REDACTED, redact_text

_SEEN: set[str] = set()


def secret(env_name: str, *, what: str) -> str:
    """The value of environment variable `env_name` (named by the config as `what`)."""
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} is not set")
    if len(value) >= 4:  # a one-letter "secret" would scrub every occurrence of that letter
        _SEEN.add(value)
    return value


def scrub(value: Any) -> Any:
    """`value` (str, dict, list, nested) with every known secret and credential-shaped string redacted."""
    if isinstance(value, str):
        for s in sorted(_SEEN, key=len, reverse=True):
            if s in value:
                value = value.replace(s, REDACTED)
        return redact_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value
