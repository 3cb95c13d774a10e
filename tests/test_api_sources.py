"""The HTTP store sources' shared parts, without a server: references, TLS choice, Retry-After,
and the cohort keys a pulled span inherits from ancestors the pull did not keep."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from oncall.sources.base import SourceUsageError
from oncall.sources.http import base_url, retry_after
from oncall.sources.inherit import Ancestry
from oncall.sources.registry import is_source_ref, parse_ref


@pytest.mark.parametrize("url, expected", [
    ("phoenix://localhost:6006/default", "http://localhost:6006"),
    ("phoenix://phoenix.internal:6006/support", "http://phoenix.internal:6006"),
    ("mlflow://127.0.0.1:5000/support", "http://127.0.0.1:5000"),
    ("langfuse://cloud.langfuse.com", "https://cloud.langfuse.com"),
    ("langfuse://lf.internal:3000?tls=true", "https://lf.internal:3000"),
    ("langfuse://lf.internal?tls=false", "http://lf.internal"),
])
def test_tls_follows_the_host_and_port_unless_told(url, expected):
    assert base_url(parse_ref(url)) == expected


def test_a_bad_tls_value_is_refused():
    with pytest.raises(SourceUsageError, match=r"tls=maybe"):
        base_url(parse_ref("langfuse://lf.internal?tls=maybe"))


def test_langsmith_names_a_project_exactly_as_typed(monkeypatch):
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-secret-key-value")
    ref = parse_ref("langsmith://Support%20Bot")
    assert (ref.host, ref.path, ref.display) == (None, "Support Bot", "langsmith://Support Bot")
    assert ref.secret == "lsv2-secret-key-value" and "lsv2" not in ref.display and "lsv2" not in repr(ref)
    assert is_source_ref("langsmith://x") and is_source_ref("phoenix://h:6006/p") and not is_source_ref("x.json")


def test_a_secret_in_the_url_is_refused_without_echoing_it():
    with pytest.raises(SourceUsageError) as err:
        parse_ref("langfuse://pk-lf-1:sk-lf-SECRET@cloud.langfuse.com")
    assert "sk-lf-SECRET" not in str(err.value) and "LANGFUSE_SECRET_KEY" in str(err.value)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("3") == 3.0 and retry_after("0.5") == 0.5 and retry_after(None) is None
    assert retry_after("soon") is None
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after(later) <= 31


def test_a_span_inherits_from_its_nearest_ancestor_fetched_level_by_level():
    spans = {("t", "root"): {"trace_id": "t", "span_id": "root", "tenant": "acme", "user_id": "u-root"},
             ("t", "chain"): {"trace_id": "t", "span_id": "chain", "parent_id": "root", "user_id": "u-chain"}}
    asked: list[list[tuple[str, str]]] = []

    def fetch(keys):
        asked.append(keys)
        return [spans[k] for k in keys if k in spans]

    call = {"trace_id": "t", "span_id": "llm", "parent_id": "chain", "session_id": "own"}
    orphan = {"trace_id": "t2", "span_id": "x", "parent_id": "gone"}
    Ancestry(fetch).resolve([call, orphan])
    assert (call["tenant"], call["user_id"], call["session_id"]) == ("acme", "u-chain", "own")
    assert call["inherited"] == {"user_id": {"value": "u-chain", "from_span": "chain"},
                                 "tenant": {"value": "acme", "from_span": "root"}}
    assert "inherited" not in orphan and "tenant" not in orphan
    assert asked == [[("t", "chain"), ("t2", "gone")], [("t", "root")]]  # one request per level; 'gone' asked once
