"""oncall.ingest.node_inspect reads what Node's util.inspect really prints, and nothing else.

The syntax cases are printed by the installed `node` itself (console.dir with the ConsoleSpanExporter's
depth 3), so the parser is checked against real output, not against our idea of it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from oncall.ingest import node_inspect as ni

EDGE_JS = r"""
class Resource { constructor() { this.attributes = { 'service.name': 'x' }; this.pending = false; } }
const circ = { name: 'loop' }; circ.self = circ;
const withProps = [1, 2]; withProps.extra = 'e';
const obj = {
  all3: 'it\'s "both" `three`', single: "it's", dq: 'say "hi"', ctrl: 'a\x00b\x1bc\x7f\u0085d\t\n\\',
  uni: 'é ✓ 😀', multi: 'line one is long enough to split across\nline two is also fairly long text\nline three\n',
  long: 'x'.repeat(10050), big: Array.from({ length: 105 }, (_, i) => i),
  nested: { a: { b: { c: { d: 1 } } } }, arrs: [[[[1]]]],
  nums: [0, 1.5, -2e-7, 1e21, NaN, Infinity, -Infinity, 12345678901234567890n, 0.1 + 0.2],
  lits: [true, false, null, undefined], date: new Date(0), re: /a\/b[c]/gi,
  res: new Resource(), circ, sparse: [1, , , 4], withProps, fn: function named() {}, cls: Resource,
  map: new Map([['k', 1], [2, 'two']]), set: new Set(['a', 'b']), empty: new Set(), emptyMap: new Map(),
  nullproto: Object.assign(Object.create(null), { z: 1 }), sym: Symbol('s'), [Symbol('key')]: 'symval',
  get g() { return 1; }, boxed: new String('boxed'), typed: new Uint8Array([1, 2, 3]),
  'quoted-key': 1, "it's": 2, '0': 'zero', $dollar: 3, emptyObj: {}, emptyArr: [],
};
console.dir(obj, { depth: 3 });
console.log('an application log line');
console.dir({ after: 'log', s: 'plain' }, { depth: 3 });
"""


@pytest.fixture(scope="module")
def printed() -> str:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return subprocess.run(["node", "-e", EDGE_JS], capture_output=True, text=True, check=True, timeout=60).stdout


def test_every_form_node_prints(printed):
    lits = list(ni.iter_literals(printed))
    assert [(line, err, skipped) for line, _, err, skipped in lits][1:] == [(lits[1][0], None, 1)]
    first, second = lits[0][1], lits[1][1]
    v = first.value
    assert v["all3"] == 'it\'s "both" `three`' and v["single"] == "it's" and v["dq"] == 'say "hi"'
    assert v["ctrl"] == "a\x00b\x1bc\x7f\x85d\t\n\\"
    assert v["uni"] == "é ✓ 😀"
    assert v["multi"] == "line one is long enough to split across\nline two is also fairly long text\nline three\n"
    assert isinstance(v["long"], ni.Elided) and v["long"].kind == "truncated-string"
    assert v["long"].text == "x" * 10000
    assert v["big"][:100] == list(range(100)) and v["big"][100] == ni.Elided("more-items", "... 5 more items")
    assert v["nested"] == {"a": {"b": {"c": ni.Elided("depth", "[Object]")}}}
    assert v["arrs"] == [[[ni.Elided("depth", "[Array]")]]]
    nums = v["nums"]
    assert nums[:4] == [0, 1.5, -2e-7, 1e21] and math.isnan(nums[4]) and nums[5:7] == [math.inf, -math.inf]
    assert nums[7] == 12345678901234567890 and nums[8] == 0.1 + 0.2
    assert v["lits"] == [True, False, None, None]
    assert v["date"] == "1970-01-01T00:00:00.000Z" and v["re"] == "/a\\/b[c]/gi"
    assert v["res"] == {"attributes": {"service.name": "x"}, "pending": False}  # `Resource {` prefix
    assert v["circ"] == {"name": "loop", "self": ni.Elided("circular", "[Circular *1]")}  # `<ref *1>` target
    assert v["sparse"] == [1, ni.Elided("empty-items", "<2 empty items>"), 4]
    assert v["withProps"] == [1, 2]
    assert v["fn"].kind == v["cls"].kind == "function" and v["g"] == ni.Elided("getter", "[Getter]")
    assert v["map"] == {"k": 1, "2": "two"} and v["set"] == ["a", "b"] and v["empty"] == [] and v["emptyMap"] == {}
    assert v["nullproto"] == {"z": 1} and v["sym"] == "Symbol(s)" and v["[Symbol(key)]"] == "symval"
    assert v["boxed"] == "boxed" and v["typed"] == [1, 2, 3]
    assert (v["quoted-key"], v["it's"], v["0"], v["$dollar"]) == (1, 2, "zero", 3)
    assert v["emptyObj"] == {} and v["emptyArr"] == []
    assert sorted(first.elided) == sorted(["long", "big[100]", "nested.a.b.c", "arrs[0][0][0]", "circ.self",
                                           "sparse[1]", "fn", "cls", "g"])
    assert second.value == {"after": "log", "s": "plain"} and second.elided == []


def test_json_inspects_to_the_same_values(printed):
    """Whatever plain data Node prints reads back as that data (the round trip the importer relies on)."""
    data = {"a": [1, 2.5, "x'y", 'q"q', None, True], "nested": {"k": "v\nw", "n": -3}, "ключ": "значение"}
    js = f"console.dir(JSON.parse({json.dumps(json.dumps(data))}), {{ depth: 3 }})"
    out = subprocess.run(["node", "-e", js], capture_output=True, text=True, check=True, timeout=60).stdout
    assert ni.loads(out) == data


@pytest.mark.parametrize("text,where", [
    ("{ a: 'unterminated }", (1, 6)),
    ("{ a: 1 b: 2 }", (1, 8)),
    ("{\n  a: fetch(x)\n}", (2, 6)),
    ("{ a: '\\q' }", (1, 7)),
    ("{ a: [1, 2 }", (1, 12)),
    ("{ a: 1 } trailing", (1, 10)),
    ("{ a: 'x' + }", (1, 12)),
])
def test_anything_else_is_refused_with_line_and_column(text, where):
    with pytest.raises(ni.InspectSyntaxError) as info:
        ni.loads(text)
    assert (info.value.line, info.value.column) == where, str(info.value)


def test_a_broken_literal_costs_only_itself():
    text = "{ a: 1 }\n{ b: oops }\nnot an object\n{ c: 'ok' }\n"
    got = [(line, lit.value if lit else None, err is not None, skipped)
           for line, lit, err, skipped in ni.iter_literals(text)]
    assert got == [(1, {"a": 1}, False, 0), (2, None, True, 0), (4, {"c": "ok"}, False, 0)]  # lines inside or after a broken one are its cost
