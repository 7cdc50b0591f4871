"""The chaos benchmark's short version: one kill of each kind on real models, then everything
consistent and nothing acknowledged lost (`benchmarks/chaos.py --trials 1`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATASETS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_one_kill_of_each_kind_leaves_everything_consistent(tmp_path):
    out = tmp_path / "chaos.json"
    env = {**os.environ, "ADAPTLOOP_DATASETS": str(DATASETS), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--trials", "1", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(out.read_text())["summary"]
    for kind, s in summary.items():
        assert s["consistent"] == s["trials"], (kind, s)
    assert summary["serve"]["traces_lost"] == 0 and summary["serve"]["feedback_lost"] == 0
    assert summary["new"]["resumed"] == summary["new"]["killed"]
