"""LiteLLM's config.yaml, read and changed the way a careful human would: ruamel.yaml round-trip
(comments, order, quoting and the file's own indentation kept), so a change's diff is the changed
lines only; and the structural checks a proxy needs from the file before it may replace the old one
(a broken YAML under `--reload` takes the proxy down).
"""

from __future__ import annotations

import io
from typing import Any

from oncall.actions.errors import InvalidChange, TargetError


def _yaml(mapping: int, sequence: int, offset: int) -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line the file has
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


def _styles(text: str) -> list[tuple[int, int, int]]:
    """Indentation styles to try, the guessed one first: ruamel's guess gives the sequence indent and
    dash offset, not the mapping indent, so the candidates around it are tried until one gives the
    file back byte for byte."""
    from ruamel.yaml.util import load_yaml_guess_indent

    _, seq, off = load_yaml_guess_indent(text)
    seq, off = seq or 2, off or 0
    guessed = [(seq, seq, off), (max(seq - off, 2), seq, off)]
    rest = [(m, s, o) for m in (2, 4) for s in (2, 4, 6) for o in (0, 2, 4) if o <= s - 2 or (o == 0)]
    return list(dict.fromkeys(guessed + rest))


def load(text: str, what: str) -> tuple[Any, Any]:
    """(document, yaml instance that dumps it in the file's own style)."""
    from ruamel.yaml.error import YAMLError

    try:
        for style in _styles(text):
            y = _yaml(*style)
            doc = y.load(text)
            if dump(y, doc) == text:
                break
        else:
            y = _yaml(*_styles(text)[0])
            doc = y.load(text)
    except YAMLError as exc:
        raise TargetError(f"{what} is not valid YAML: {_yaml_error(exc)}") from None
    if not isinstance(doc, dict):
        raise TargetError(f"{what}: expected a mapping at the top (model_list: …)")
    out = dump(y, doc)
    if out != text:
        raise TargetError(f"{what}: does not round-trip through ruamel.yaml unchanged (line "
                          f"{_first_difference(text, out)}); a change would rewrite lines it does not mean "
                          "to — normalise the file once by hand")
    return doc, y


def dump(y: Any, doc: Any) -> str:
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _first_difference(a: str, b: str) -> int:
    for i, (x, z) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if x != z:
            return i
    return min(len(a.splitlines()), len(b.splitlines())) + 1


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


# -- what the file says ---------------------------------------------------------------------------
def model_list(doc: Any) -> list[Any]:
    ml = doc.get("model_list")
    return ml if isinstance(ml, list) else []


def model_names(doc: Any) -> list[str]:
    return [str(m["model_name"]) for m in model_list(doc) if isinstance(m, dict) and "model_name" in m]


def aliases(doc: Any) -> dict[str, str]:
    rs = doc.get("router_settings") or {}
    mga = rs.get("model_group_alias") if isinstance(rs, dict) else None
    out: dict[str, str] = {}
    for k, v in (mga or {}).items():
        out[str(k)] = str(v.get("model")) if isinstance(v, dict) else str(v)
    return out


def resolve(doc: Any, name: str) -> str:
    """The model group a request for `name` is served by (model_group_alias wins over model_name,
    as in LiteLLM's router)."""
    return aliases(doc).get(name, name)


def deployments(doc: Any, group: str) -> list[dict[str, str | None]]:
    """(model, api_base) of each deployment in a model group: what the proxy's x-litellm-model-name and
    x-litellm-model-api-base response headers say about who answered."""
    out = []
    for m in model_list(doc):
        if isinstance(m, dict) and str(m.get("model_name")) == group:
            params = m.get("litellm_params") or {}
            base = params.get("api_base")
            literal = isinstance(base, str) and not base.startswith("os.environ/")
            out.append({"model": str(params.get("model")), "api_base": str(base).rstrip("/") if literal else None})
    return out


def check_structure(text: str, what: str) -> list[str]:
    """What the proxy needs from the file; raises InvalidChange naming the first problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise InvalidChange(f"{what}: the new file is not valid YAML: {_yaml_error(exc)}") from None
    if not isinstance(doc, dict):
        raise InvalidChange(f"{what}: the new file is not a mapping")
    ml = doc.get("model_list")
    if not isinstance(ml, list) or not ml:
        raise InvalidChange(f"{what}: the new file has no model_list entries")
    for i, m in enumerate(ml):
        if not isinstance(m, dict) or not m.get("model_name"):
            raise InvalidChange(f"{what}: model_list[{i}] has no model_name")
        params = m.get("litellm_params")
        if not isinstance(params, dict) or not params.get("model"):
            raise InvalidChange(f"{what}: model_list[{i}] ({m['model_name']}) has no litellm_params.model")
    names = {str(m["model_name"]) for m in ml}
    rs = doc.get("router_settings") or {}
    if not isinstance(rs, dict):
        raise InvalidChange(f"{what}: router_settings is not a mapping")
    mga = rs.get("model_group_alias") or {}
    if not isinstance(mga, dict):
        raise InvalidChange(f"{what}: router_settings.model_group_alias is not a mapping")
    for alias, target in mga.items():
        t = target.get("model") if isinstance(target, dict) else target
        if str(t) not in names:
            raise InvalidChange(f"{what}: model_group_alias {alias} -> {t}: no model_list entry is named {t}")
    known = names | {str(a) for a in mga}
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for rule in rs.get(key) or doc.get("litellm_settings", {}).get(key) or []:
            if isinstance(rule, dict):
                for src, dsts in rule.items():
                    for d in ([*dsts] if isinstance(dsts, list) else [dsts]):
                        if str(d) not in known:
                            raise InvalidChange(f"{what}: {key}: {src} -> {d}: no model or alias named {d}")
    return ["YAML parses", f"{len(ml)} model_list entries have model_name and litellm_params.model",
            f"model_group_alias: {len(mga)} resolve to model_list entries"]
