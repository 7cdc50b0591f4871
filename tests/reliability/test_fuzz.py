"""Property-based fuzzing of the JSONL readers and the trace importer: whatever the lines hold, no
traceback — every line is read or quarantined with a reason (or the whole file refused in one line),
and the counts add up."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptloop.agent.traffic import import_traces
from adaptloop.data.sources import load_classification, load_extraction
from adaptloop.errors import AdaptloopError
from adaptloop.workspace import Workspace, init_workspace

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                            inner, max_size=4),
                      max_leaves=8)
FIELDS = ("text", "label", "spans", "tokens", "tags", "input", "id", "feedback", "output", "ts", "group", "entities")
records = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
good_records = st.builds(lambda t, lab: {"text": t, "label": lab}, st.text(min_size=1, max_size=40),
                         st.sampled_from(["a", "b", "c"]))
lines = st.lists(st.one_of(records.map(json.dumps), good_records.map(json.dumps),
                           st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
                           st.just(""), st.just("   "), st.just("[1, 2]"), st.just("{broken")),
                 min_size=1, max_size=25)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(tmp_path, name, rows) -> str:
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n", encoding="utf-8", errors="surrogatepass")
    return str(p)


def nonblank(rows) -> int:
    return sum(1 for r in rows if r.strip())


@pytest.mark.parametrize("reader", [load_classification, load_extraction], ids=["classification", "extraction"])
@FUZZ
@given(rows=lines)
def test_readers_account_for_every_line(tmp_path, reader, rows):
    path = write(tmp_path, "d.jsonl", rows)
    try:
        loaded = reader(path)
    except AdaptloopError as exc:
        assert "\n" not in str(exc)
        return
    assert len(loaded.examples) + len(loaded.quarantined) == nonblank(rows)
    assert all(q.reason for q in loaded.quarantined)


@FUZZ
@given(rows=lines)
def test_trace_import_accounts_for_every_line_and_is_idempotent(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("traces")
    ws = Workspace.open(init_workspace(tmp / "ws"))
    path = write(tmp, "t.jsonl", rows)
    try:
        first = import_traces(ws, path)
    except AdaptloopError as exc:
        assert "\n" not in str(exc)
        return
    assert first["read"] + first["quarantined"] + first["blank"] == first["lines"] == len(rows)
    again = import_traces(ws, path)
    assert again["new"] == 0 and again["already_stored"] == first["read"]
    ws.store.engine.dispose()
