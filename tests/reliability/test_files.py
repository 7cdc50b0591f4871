"""Bad files and arguments: read what can be read, quarantine the rest once, account for every line."""

import json

import pytest

from adaptloop.agent.budget import parse_budget
from adaptloop.agent.traffic import import_traces
from adaptloop.data.sources import load_classification
from adaptloop.errors import BudgetError
from adaptloop.store.db import Quarantine
from adaptloop.workspace import Workspace, init_workspace


def test_a_byte_order_mark_is_not_data(tmp_path):
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(6)]
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    loaded = load_classification(p)
    assert len(loaded.examples) == 6 and not loaded.quarantined


def test_importing_a_trace_file_twice_quarantines_once_and_counts_every_line(tmp_path):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"id": "a", "input": "hello"}) + "\n\n{broken\n"
                 + json.dumps({"id": "b", "input": ""}) + "\n   \n" + json.dumps({"id": "c", "input": "x"}) + "\n")
    first = import_traces(ws, str(p))
    assert (first["read"], first["new"], first["quarantined"], first["blank"], first["lines"]) == (2, 2, 2, 2, 6)
    again = import_traces(ws, str(p))
    assert (again["new"], again["already_stored"], again["quarantined"]) == (0, 2, 2)
    assert len(ws.store.all(Quarantine.__table__.select())) == 2


@pytest.mark.parametrize("text, words", [("30", "no unit"), ("1s", "10s minimum"), ("100h", "48h maximum"),
                                         ("soon", "does not parse")])
def test_budgets_say_the_unit_and_the_range(text, words):
    with pytest.raises(BudgetError, match=words) as exc:
        parse_budget(text)
    assert "\n" not in str(exc.value)
