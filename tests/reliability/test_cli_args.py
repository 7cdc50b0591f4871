"""Bad arguments and broken workspaces at the command line: one line naming the problem and the fix,
the exit code it must have, never a traceback."""

import socket

import pytest
from typer.testing import CliRunner

from adaptloop.agent.coldstart import cold_start
from adaptloop.cli import app
from adaptloop.data.sources import load_classification
from adaptloop.train.fake import FakeTrainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl

runner = CliRunner()


def call(*args: str):
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


@pytest.fixture
def trained(tmp_path, banking_sample):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    cold_start(ws, load_classification(write_jsonl(tmp_path / "d.jsonl", subset(banking_sample, 4, 10))),
               "route banking", 30, make_trainer=lambda s: FakeTrainer(), embed_fn=None)
    return ws.root


def test_a_file_given_as_workspace(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = call("runs", "-w", f)
    assert r.exit_code == 2 and "is a file, not a workspace folder" in r.output


@pytest.mark.sqlite_only
def test_a_deleted_store_is_not_replaced_by_an_empty_history(trained):
    (trained / ".adaptloop" / "store.db").unlink()
    r = call("models", "-w", trained)
    assert r.exit_code == 2 and "store.db is missing" in r.output and "restore" in r.output
    assert not (trained / ".adaptloop" / "store.db").exists()


def test_report_into_a_folder_and_convert_onto_a_folder(trained, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    r = call("report", "-o", out, "-w", trained)
    assert r.exit_code == 0 and (out / "run-1.html").is_file()
    data = tmp_path / "spans.jsonl"
    data.write_text('{"text": "Ann lives in Oslo", "spans": [{"start": 0, "end": 3, "label": "PER"}]}\n')
    r = call("convert", data, "--to", "tags", "-o", out)
    assert r.exit_code == 2 and "is a folder; give a file name" in r.output


def test_serve_on_a_bad_or_taken_port(trained):
    r = call("serve", "--port", "99999", "-w", trained)
    assert r.exit_code == 2 and "--port" in r.output and "65535" in r.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = call("serve", "--host", "127.0.0.1", "--port", port, "-w", trained)
    assert r.exit_code == 2 and f"cannot serve on 127.0.0.1:{port}" in r.output and "serving" not in r.output


@pytest.mark.parametrize("budget, words", [("30", "no unit"), ("1s", "minimum"), ("100h", "maximum")])
def test_budgets_out_of_range(trained, tmp_path, banking_sample, budget, words):
    data = write_jsonl(tmp_path / "d2.jsonl", subset(banking_sample, 4, 10))
    r = call("new", "route banking", "--data", data, "--budget", budget, "-w", trained)
    assert r.exit_code == 2 and words in r.output


def test_eval_says_how_many_lines_it_skipped(trained, tmp_path, banking_sample):
    rows = subset(banking_sample, 4, 3)
    path = write_jsonl(tmp_path / "e.jsonl", rows)
    with path.open("a") as f:
        f.write("{broken\n")
    r = call("eval", "--data", path, "-w", trained)
    assert r.exit_code == 0 and "1 malformed lines" in r.output and "not scored" in r.output


@pytest.mark.parametrize("toml, words", [
    ("this is = not [toml", "is not valid TOML"),
    ("[search]\nworkers = 'many'\n", "setting 'search.workers'"),
    ("[agent]\neval_fraction = 7\n", "setting 'agent.eval_fraction'"),
])
def test_a_broken_settings_file(tmp_path, toml, words):
    root = tmp_path / "w"
    call("init", root)
    (root / "adaptloop.toml").write_text(toml)
    r = call("models", "-w", root)
    assert r.exit_code == 2 and words in r.output and "fix" in r.output


def test_a_missing_workspace_and_a_missing_data_file(tmp_path):
    r = call("runs", "-w", tmp_path / "nowhere")
    assert r.exit_code == 2 and "does not exist; create it with `adaptloop init" in r.output
    root = tmp_path / "w"
    call("init", root)
    r = call("new", "route things", "--data", tmp_path / "missing.jsonl", "--budget", "20s", "-w", root)
    assert r.exit_code == 2 and "does not exist" in r.output
