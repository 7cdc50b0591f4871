"""The CLI through typer's runner where nothing is trained: a missing workspace or model is one line and
exit code 2, and the help names every command. (A real cold start through the CLI: tests/integration.)"""

from tests.conftest import run


def test_missing_workspace_and_model(tmp_path):
    r = run("models", "-w", tmp_path / "nope")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    assert run("init", tmp_path / "empty").exit_code == 0
    r = run("predict", "hi", "-w", tmp_path / "empty")
    assert r.exit_code == 2 and "no model 'production'" in r.stderr
    r = run("new", "--resume", "-w", tmp_path / "empty")
    assert r.exit_code == 2 and "nothing" in r.stderr or "no interrupted run" in r.stderr


def test_help_explains_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("init", "new", "eval", "predict", "runs", "models"):
        assert cmd in r.stdout
    assert "frozen eval set" in run("new", "--help").stdout


def test_new_without_data_drafts_or_says_what_to_give(tmp_path):
    ws = tmp_path / "ws"
    assert run("init", ws).exit_code == 0
    r = run("new", "build me a sentiment classifier", "-w", ws)
    assert r.exit_code == 2 and "--data FILE" in r.stderr and "[llm] url" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("new", "build me a PII detection model", "-w", ws)  # no terminal to ask in
    assert r.exit_code == 2 and "pass --yes" in r.stderr and "PERSON" in r.stderr


def test_sigterm_stops_a_command_the_way_ctrl_c_does():
    import os
    import signal
    import time

    import typer
    from typer.testing import CliRunner

    from adaptloop.cli.base import Group

    app = typer.Typer(cls=Group)

    @app.command()
    def work() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # never reached: the handler raises at once

    @app.command()
    def rest() -> None:
        pass

    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert CliRunner().invoke(app, ["work"]).exit_code == 130  # the interrupted path: resumable
    assert time.monotonic() - started < 5 and signal.getsignal(signal.SIGTERM) is before
