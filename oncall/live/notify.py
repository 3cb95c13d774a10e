"""Where `oncall watch` sends what it found: a JSON webhook, a Slack incoming webhook, PagerDuty Events v2.

A target is named inline (`webhook=URL`, `slack=URL`, `pagerduty=ROUTING_KEY_ENV`) or by a
`[notify.NAME]` entry of oncall.toml:

    [notify.pager]
    type = "pagerduty"              # webhook | slack | pagerduty
    routing_key_env = "PD_ROUTING_KEY"
    # url = "https://events.pagerduty.com/v2/enqueue"   (the default)
    # severity = "critical"         (critical | error | warning | info; default error)

    [notify.oncall-slack]
    slack_url_env = "SLACK_WEBHOOK"  # the webhook URL is a secret: from the environment

    [notify.hook]
    type = "webhook"
    url = "https://alerts.internal/oncall"   # or url_env

Secrets (routing keys, Slack webhook URLs, a webhook's URL when given as url_env) come from the
environment, are never printed and never land in the incident. Every send has a timeout and is
retried with backoff on timeouts, connection errors, 429 and 5xx (honouring Retry-After); a target
that still fails raises NotifyError and the caller records nothing as sent, so the next check tries
again.

Payload shapes, as documented:
- PagerDuty Events API v2 (`POST /v2/enqueue`, developer.pagerduty.com "Send an Alert Event" /
  "Events API v2 Overview"): `routing_key`, `event_action` trigger|resolve, `dedup_key`; a trigger
  carries `payload{summary (≤ 1024 chars), source, severity, timestamp, component, group, class,
  custom_details}`; a resolve needs only the key and the action. 202 means accepted.
- Slack incoming webhooks (api.slack.com/messaging/webhooks, Block Kit reference): `text` (the
  notification fallback) plus `blocks`: a `header` (plain_text ≤ 150 chars) and `section`s of
  mrkdwn (≤ 3000 chars each). Slack answers 200 `ok`.
- The generic webhook gets the alert as JSON (`oncall_alert` below).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2

from oncall.config import ConfigError, load_config, refuse_literal_secrets
from oncall.errors import InputError
from oncall.redact import redact_text

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
TIMEOUT = 10.0
ATTEMPTS = 4
BACKOFF = (1.0, 2.0, 4.0)
SUMMARY_MAX = 1024  # PagerDuty: payload.summary
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SEVERITIES = ("critical", "error", "warning", "info")


class NotifyError(Exception):
    """A notification could not be delivered; the message names the target, never its secret."""


@dataclass
class Alert:
    """One thing to say: a cause appeared (trigger) or its cohort is back within noise (resolve)."""

    action: str  # trigger | resolve
    dedup_key: str  # stable for one cause, across checks and restarts
    title: str  # the cause, one line
    summary: str  # title plus the headline effects, one line
    effects: list[str]
    counts: dict[str, Any]
    command: str  # the oncall command that opens it
    cohort: dict[str, str]
    kind: str
    began_at: str | None
    at: str
    incident: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"oncall_alert": 1, "action": self.action, "dedup_key": self.dedup_key, "title": self.title,
                "summary": self.summary, "kind": self.kind, "cohort": self.cohort, "began_at": self.began_at,
                "effects": self.effects, "counts": self.counts, "command": self.command, "at": self.at,
                "incident": self.incident, "detail": self.detail}


class Target(Protocol):
    name: str
    kind: str

    def send(self, alert: Alert) -> None: ...


def _post(url: str, body: dict[str, Any], *, what: str, ok: tuple[int, ...], headers: dict[str, str] | None = None,
          sleep: Any = time.sleep) -> httpx2.Response:
    """POST JSON with retries; raises NotifyError (URL not named: it may be the secret)."""
    last = ""
    for attempt in range(ATTEMPTS):
        retry_after: float | None = None
        try:
            resp = httpx2.post(url, json=body, timeout=TIMEOUT, headers=headers)
        except httpx2.TimeoutException:
            last = f"timed out after {TIMEOUT:g} s"
        except httpx2.HTTPError as exc:
            last = f"could not connect ({type(exc).__name__})"
        else:
            if resp.status_code in ok:
                return resp
            text = redact_text(resp.text.strip().replace("\n", " ")[:200]) or "(empty body)"
            last = f"answered {resp.status_code}: {text}"
            if resp.status_code != 429 and resp.status_code < 500:
                break  # the request itself is wrong: retrying cannot help
            retry_after = _retry_after(resp.headers.get("Retry-After"))
        if attempt + 1 < ATTEMPTS:
            sleep(min(30.0, retry_after if retry_after is not None else BACKOFF[min(attempt, len(BACKOFF) - 1)]))
    raise NotifyError(f"{what}: {last} (after {attempt + 1} attempt(s))")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the three kinds ----------------------------------------------------------------------------

@dataclass
class WebhookTarget:
    name: str
    url: str
    kind: str = "webhook"

    def send(self, alert: Alert) -> None:
        _post(self.url, alert.as_json(), what=f"notify {self.name} (webhook)", ok=(200, 201, 202, 204))


@dataclass
class SlackTarget:
    name: str
    url: str
    kind: str = "slack"

    def send(self, alert: Alert) -> None:
        _post(self.url, slack_message(alert), what=f"notify {self.name} (Slack)", ok=(200,))


@dataclass
class PagerDutyTarget:
    name: str
    routing_key: str
    url: str = PAGERDUTY_URL
    severity: str = "error"
    kind: str = "pagerduty"

    def send(self, alert: Alert) -> None:
        _post(self.url, pagerduty_event(alert, self.routing_key, self.severity),
              what=f"notify {self.name} (PagerDuty)", ok=(200, 202))


def slack_message(alert: Alert) -> dict[str, Any]:
    icon = ":rotating_light:" if alert.action == "trigger" else ":white_check_mark:"
    head = ("New cause: " if alert.action == "trigger" else "Back within noise: ") + alert.title
    lines = [f"*{_mrkdwn(alert.title)}*"]
    lines += [f"• {_mrkdwn(e)}" for e in alert.effects[:8]]
    counts = ", ".join(f"{k}: {v}" for k, v in alert.counts.items() if v is not None)
    if counts:
        lines.append(f"_{_mrkdwn(counts)}_")
    return {
        "text": _truncate(f"{icon} {head}", 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _truncate(head, SLACK_HEADER_MAX)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines), SLACK_SECTION_MAX)}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": _truncate(f"Open it: `{alert.command}`", SLACK_SECTION_MAX)}},
        ],
    }


def _mrkdwn(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters (links, mentions): escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def pagerduty_event(alert: Alert, routing_key: str, severity: str = "error") -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": alert.action, "dedup_key": alert.dedup_key}
    if alert.action == "trigger":
        event["payload"] = {
            "summary": _truncate(alert.summary, SUMMARY_MAX),
            "source": f"oncall watch ({alert.incident})",
            "severity": severity,
            "timestamp": alert.at,
            "component": alert.cohort.get("feature") or alert.cohort.get("model") or None,
            "group": alert.cohort.get("tenant") or None,
            "class": alert.kind,
            "custom_details": {"cause": alert.title, "effects": alert.effects, "counts": alert.counts,
                               "cohort": alert.cohort, "began_at": alert.began_at, "open_with": alert.command},
        }
        event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
        event["client"] = "oncall"
    return event


# -- naming a target -----------------------------------------------------------------------------

def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise InputError(f"{what}: environment variable {name} is not set")
    return value


def resolve_target(spec: str, *, config: str | None = None) -> Target:
    """`webhook=URL`, `slack=URL`, `pagerduty=ROUTING_KEY_ENV`, or the name of a [notify.NAME] entry."""
    kind, sep, value = spec.partition("=")
    if sep:
        kind = kind.strip().lower()
        value = value.strip()
        if not value:
            raise InputError(f"--notify {spec}: give a value after '='")
        if kind == "webhook":
            return WebhookTarget(name="webhook", url=_url(value, f"--notify {kind}="))
        if kind == "slack":
            return SlackTarget(name="slack", url=_url(value, "--notify slack="))
        if kind == "pagerduty":
            return PagerDutyTarget(name="pagerduty", routing_key=_env(value, f"--notify pagerduty={value}"),
                                   url=os.environ.get("ONCALL_PAGERDUTY_URL") or PAGERDUTY_URL)
        raise InputError(f"--notify {spec}: unknown kind {kind!r}; use webhook=URL, slack=URL, "
                         "pagerduty=ROUTING_KEY_ENV or a [notify.NAME] entry of oncall.toml")
    try:
        entry = load_config(config).entry("notify", name=spec)
    except ConfigError as exc:
        raise InputError(f"--notify {spec}: {exc}") from None
    s = dict(entry.settings)
    refuse_literal_secrets(s, entry.where())
    kind = str(s.get("type") or ("slack" if "slack_url_env" in s else
                                 "pagerduty" if "routing_key_env" in s else "webhook")).lower()
    if kind == "pagerduty":
        if "routing_key_env" not in s:
            raise InputError(f"{entry.where()}: a pagerduty target needs routing_key_env")
        severity = str(s.get("severity", "error"))
        if severity not in SEVERITIES:
            raise InputError(f"{entry.where('severity')}: {severity!r} is not one of {', '.join(SEVERITIES)}")
        return PagerDutyTarget(name=spec, routing_key=_env(str(s["routing_key_env"]), entry.where("routing_key_env")),
                               url=_url(str(s.get("url") or PAGERDUTY_URL), entry.where("url")), severity=severity)
    if kind not in ("slack", "webhook"):
        raise InputError(f"{entry.where('type')}: {kind!r} is not webhook, slack or pagerduty")
    env_key = next((k for k in ("slack_url_env", "url_env") if k in s), None)
    if env_key:
        url = _env(str(s[env_key]), entry.where(env_key))
    elif "url" in s:
        url = str(s["url"])
    else:
        raise InputError(f"{entry.where()}: give the URL as url_env = \"ENV_NAME\" (or url for a plain webhook)")
    url = _url(url, entry.where())
    return SlackTarget(name=spec, url=url) if kind == "slack" else WebhookTarget(name=spec, url=url)


def _url(value: str, where: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise InputError(f"{where}: {redact_text(value)!r} is not an http(s) URL")
    return value
