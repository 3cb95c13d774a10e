"""The index-alias adapter (roll a search alias back to the last good index): on the application's
JSON alias file, and on the Elasticsearch/OpenSearch aliases API (a loopback server implementing its
documented endpoints: no search engine runs here). Planned, confirmed, verified, undone."""

from __future__ import annotations

import json

import pytest

from oncall.actions import BadArguments, get_adapter, load_config, plan, undo
from oncall.actions.audit import action_rows
from oncall.actions.engine import execute
from oncall.store import open_db
from tests.actions.conftest import write_toml
from tests.actions.servers import SearchAliasServer

ALIASES = {"aliases": {"help-articles": "help-articles-v42", "release-notes": "notes-v3"},
           "indexes": ["help-articles-v41", "help-articles-v42", "notes-v3"]}
API_KEY = "es-key-walrus-77c1"  # not credential-shaped: only the adapter's own scrubbing hides it


@pytest.fixture
def alias_file(tmp_path):
    path = tmp_path / "aliases.json"
    path.write_text(json.dumps(ALIASES, indent=2) + "\n")
    write_toml(tmp_path, '[actions.targets.search]\nadapter = "index-alias"\npath = "aliases.json"\n')
    return path, load_config(tmp_path / "oncall.toml")


def test_file_alias_rolled_back_verified_and_undone_byte_for_byte(alias_file, tmp_path):
    path, cfg = alias_file
    original = path.read_bytes()
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("search", cfg), {"op": "point", "alias": "help-articles", "index": "help-articles-v41"})
    assert path.read_bytes() == original  # planning wrote nothing
    assert (p.before, p.after) == ({"alias": "help-articles", "index": "help-articles-v42"},
                                   {"alias": "help-articles", "index": "help-articles-v41"})
    assert [ln for ln in p.diff if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        '-    "help-articles": "help-articles-v42",', '+    "help-articles": "help-articles-v41",']
    rec = execute(p, db=db, confirm=True, why="index rebuilt with another embedding model")
    assert rec.status == "verified" and rec.verification["detail"] == {"indexes": ["help-articles-v41"]}
    doc = json.loads(path.read_text())
    assert doc["aliases"] == {"help-articles": "help-articles-v41", "release-notes": "notes-v3"}
    # the same action again changes nothing
    again = plan(get_adapter("search", cfg), {"alias": "help-articles", "index": "help-articles-v41"})
    assert not again.changes and execute(again, db=db, confirm=True).status == "unchanged"
    back = undo(rec.action_id, db=db, confirm=True, config=cfg)
    assert back.status == "verified" and path.read_bytes() == original
    db.close()


def test_file_alias_refuses_an_unknown_alias_or_an_unlisted_index(alias_file):
    path, cfg = alias_file
    with pytest.raises(BadArguments, match="no alias 'kb'.*aliases: help-articles, release-notes"):
        plan(get_adapter("search", cfg), {"alias": "kb", "index": "help-articles-v41"})
    with pytest.raises(BadArguments, match="'help-articles-v40' is not in the file's indexes"):
        plan(get_adapter("search", cfg), {"alias": "help-articles", "index": "help-articles-v40"})


def test_a_target_needs_a_path_or_a_url_not_both(tmp_path):
    from oncall.actions import ConfigError

    write_toml(tmp_path, '[actions.targets.search]\nadapter = "index-alias"\n')
    with pytest.raises(ConfigError, match="exactly one of `path`.*or `url`"):
        get_adapter("search", load_config(tmp_path / "oncall.toml"))


@pytest.fixture
def search_api(tmp_path, monkeypatch):
    monkeypatch.setenv("ES_API_KEY", API_KEY)
    with SearchAliasServer(["help-articles-v41", "help-articles-v42"], {"help-articles": {"help-articles-v42"}},
                           api_key=API_KEY) as srv:
        write_toml(tmp_path, f'[actions.targets.search]\nadapter = "index-alias"\nurl = "{srv.url}"\n'
                             'api_key_env = "ES_API_KEY"\n')
        yield srv, load_config(tmp_path / "oncall.toml")


def test_api_alias_moved_atomically_verified_and_undone(search_api, tmp_path):
    srv, cfg = search_api
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("search", cfg), {"op": "point", "alias": "help-articles", "index": "help-articles-v41"})
    assert srv.writes() == [] and p.summary == "alias help-articles: help-articles-v42 → help-articles-v41"
    rec = execute(p, db=db, confirm=True, why="index rebuilt with another embedding model")
    assert rec.status == "verified", rec.error
    assert srv.aliases == {"help-articles": {"help-articles-v41"}}
    (write,) = srv.writes()  # one request: remove and add together, so no search ever sees no index
    assert write.path == "/_aliases" and write.body == {"actions": [
        {"remove": {"index": "help-articles-v42", "alias": "help-articles"}},
        {"add": {"index": "help-articles-v41", "alias": "help-articles"}}]}
    assert write.headers["authorization"] == f"ApiKey {API_KEY}"
    assert API_KEY not in json.dumps(action_rows(db, rec.action_id), default=str)  # never in the audit
    back = undo(rec.action_id, db=db, confirm=True, config=cfg)
    assert back.status == "verified" and srv.aliases == {"help-articles": {"help-articles-v42"}}
    db.close()


def test_api_alias_refuses_a_missing_index_and_aborts_when_the_alias_moved(search_api, tmp_path):
    srv, cfg = search_api
    with pytest.raises(BadArguments, match="no index 'help-articles-v40'"):
        plan(get_adapter("search", cfg), {"alias": "help-articles", "index": "help-articles-v40"})
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("search", cfg), {"alias": "help-articles", "index": "help-articles-v41"})
    srv.indexes.add("help-articles-v43")
    srv.aliases["help-articles"] = {"help-articles-v43"}  # a rebuild moved it meanwhile
    rec = execute(p, db=db, confirm=True)
    assert rec.status == "aborted" and srv.writes() == []
    assert srv.aliases == {"help-articles": {"help-articles-v43"}}
    db.close()
