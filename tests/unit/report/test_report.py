"""The run report renderers: a self-contained HTML page that loads cleanly in a real browser, and a terminal tree."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from adaptloop.report.html import forest, render_html, write_report
from adaptloop.report.tree import DROPPED_MARK, WINNER_MARK, render_tree, tree_text

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ODD_NAME = 'relabel <noisy> & "clean"'  # must be escaped everywhere it appears


def _steps(dev: list[float], loss: list[float]) -> list[dict]:
    return [{"step": 50 * i, "epoch": i / 2, "dev_accuracy": d, "train_loss": lo, "train_accuracy": min(1.0, d + 0.04),
             "seconds": 3.0 * (i + 1)} for i, (d, lo) in enumerate(zip(dev, loss))]


def _node(id_: int, name: str, parent: int | None, intervention: str, strategy: str, dev: float | None, *,
          status: str = "done", winner: bool = False, dropped: bool = False, curve: list | None = None,
          encoder: str = MINILM) -> dict:
    return {"id": id_, "name": name, "parent_id": parent, "status": status, "intervention": intervention,
            "reason": f"hypothesis for {name}: {intervention} should help the confusable intents",
            "pipeline": {"recipe": "raw", "strategy": strategy, "encoder": encoder, "hparams": {"lr": 2e-5}, "seed": 0},
            "dev": {} if dev is None else {"accuracy": dev, "macro_f1": dev - 0.01},
            "eval": {"accuracy": dev - 0.005, "macro_f1": dev - 0.015} if winner else None,
            "train_seconds": 61.2, "winner": winner, "dropped": dropped, "curve": curve or []}


@pytest.fixture()
def view() -> dict:
    """Two branches off the baseline, a rolled-back child, a failed node, an interrupted one, and odd text."""
    sweep = [{"C": c, "dev_accuracy": a} for c, a in ((0.3, 0.84), (1.0, 0.855), (3.0, 0.861), (10.0, 0.858))]
    nodes = [
        _node(1, "baseline", None, "start", "frozen", 0.861, curve=sweep),
        _node(2, "finetune", 1, "finetune", "lora", 0.902,
              curve=_steps([0.80, 0.87, 0.895, 0.902], [1.9, 0.9, 0.5, 0.35])),
        _node(3, "finetune-lr-down", 2, "lower-lr", "lora", 0.893, dropped=True,
              curve=_steps([0.78, 0.85, 0.893], [2.0, 1.1, 0.6])),
        _node(4, "contrastive", 2, "contrastive", "setfit", 0.921, winner=True,
              curve=_steps([0.86, 0.90, 0.915, 0.921], [0.7, 0.4, 0.25, 0.2])),
        _node(5, "larger-encoder", 1, "larger-encoder", "frozen", None, status="failed",
              encoder="BAAI/bge-base-en-v1.5"),
        _node(6, "augment-paraphrase", 4, "augment", "setfit", 0.915, status="interrupted", dropped=True,
              curve=[{"step": 0, "dev_accuracy": 0.9}]),  # one point: nothing to chart
        _node(7, ODD_NAME, 1, "relabel", "frozen", 0.868),
    ]
    return {
        "run": {"id": 3, "task": "banking77 intents", "status": "done", "budget_s": 1200, "spent_s": 1180.2,
                "stop_reason": "plateau: no gain above 0.003 in 2 rounds", "primary_metric": "accuracy",
                "started_at": "2026-11-25T05:40:00", "eval_set_id": "abc123def4567890"},
        "nodes": nodes,
        "findings": [
            {"node_id": 2, "kind": "confusable_pair", "summary": "card_arrival vs card_delivery_estimate",
             "severity": 0.12, "target": {"labels": ["card_arrival", "card_delivery_estimate"]},
             "evidence": {"count": 7}, "suggests": ["contrastive", "larger-encoder"]},
            {"node_id": 1, "kind": "underfit", "summary": "train accuracy <0.9 & flat", "severity": 0.3,
             "target": {}, "evidence": {}, "suggests": ["finetune"]},
        ],
        "decisions": [
            {"at": "2026-11-25T05:41:00", "kind": "start", "reason": "cold start with a frozen encoder", "data": {}},
            {"at": "2026-11-25T05:50:00", "kind": "select", "reason": "contrastive targets the confusable pair",
             "data": {"candidates": ["contrastive", "larger-encoder"]}},
            {"at": "2026-11-25T06:00:00", "kind": "stop", "reason": "plateau", "data": {"rounds": 2}},
        ],
        "confusions": [
            {"label": "card_arrival", "pred": "card_delivery_estimate", "count": 7},
            {"label": "card_delivery_estimate", "pred": "card_arrival", "count": 4},
            {"label": "top_up_failed", "pred": "top_up_reverted", "count": 3},
            {"label": "pending_transfer", "pred": "transfer_not_received_by_recipient", "count": 2},
        ],
        "per_class": {
            "card_arrival": {"precision": 0.7, "recall": 0.6, "f1": 0.646, "support": 40},
            "card_delivery_estimate": {"precision": 0.65, "recall": 0.75, "f1": 0.696, "support": 40},
            "top_up_failed": {"precision": 0.95, "recall": 0.9, "f1": 0.924, "support": 40},
            "activate_my_card": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 40},
        },
    }


def test_html_is_self_contained_and_escaped(view):
    before = copy.deepcopy(view)
    page = render_html(view)
    assert view == before, "rendering must not mutate the view"
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page.lower() and "<script" not in page.lower() and "@import" not in page
    assert "<noisy>" not in page and "&lt;noisy&gt; &amp; &quot;clean&quot;" in page
    for section in ("header", "graph", "curves", "confusions", "per-class", "findings", "decisions"):
        assert f'id="{section}"' in page
    assert page.count('<g class="node') == 7 and page.count('<g class="edge') == 6
    # three step curves and the C sweep; the one-point curve and the empty ones are not charted
    assert page.count('<svg class="curve"') == 4
    assert 'class="heatmap"' in page and page.count('class="decision"') == 3


def test_report_loads_in_headless_chromium(view, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    speeds = {1: 310.0, 2: 95.5, 4: 40.2, 7: 280.0}  # and the score-against-speed section, odd name included
    view = {**view, "nodes": [{**n, "texts_per_second": speeds.get(n["id"])} for n in view["nodes"]]}
    path = write_report(view, tmp_path / "reports" / "run-3.html")
    assert path.read_text(encoding="utf-8") == render_html(view)
    assert [p.name for p in path.parent.iterdir()] == ["run-3.html"], "the temp file must be renamed away"

    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.on("requestfailed", lambda req: errors.append(f"requestfailed: {req.url}"))
            page.on("request", lambda req: None if req.url == path.as_uri() else errors.append(f"request: {req.url}"))
            page.goto(path.as_uri(), wait_until="load")
            counts = {sel: page.locator(sel).count()
                      for sel in ("svg.graph g.node", "svg.graph g.edge", "svg.curve", "g.node.winner",
                                  "g.node.dropped", "g.node.status-failed", "svg.tradeoff circle.point",
                                  "#tradeoff tbody tr")}
            winner_name = page.locator("g.node.winner").get_attribute("data-name")
            odd_name = page.locator('g.node[data-id="7"]').get_attribute("data-name")
            graph_box = page.locator("svg.graph").bounding_box()
        finally:
            browser.close()
    assert errors == []
    n_roots = sum(n["parent_id"] is None for n in view["nodes"])
    assert counts == {"svg.graph g.node": len(view["nodes"]), "svg.graph g.edge": len(view["nodes"]) - n_roots,
                      "svg.curve": 4, "g.node.winner": 1, "g.node.dropped": 2, "g.node.status-failed": 1,
                      "svg.tradeoff circle.point": 4, "#tradeoff tbody tr": 4}
    assert winner_name == "contrastive" and odd_name == ODD_NAME
    assert graph_box is not None and graph_box["width"] > 0 and graph_box["height"] > 0


def test_tree_text_shows_every_node_and_the_markers(view):
    text = tree_text(view, width=160)
    assert "\x1b[" not in text
    for node in view["nodes"]:
        assert node["name"] in text
    lines = text.splitlines()
    assert "banking77 intents" in lines[0]
    winner_line = next(line for line in lines if "contrastive ←" in line)
    assert WINNER_MARK in winner_line and "+0.019" in winner_line
    dropped = [line for line in lines if DROPPED_MARK in line]
    assert len(dropped) == 2 and any("finetune-lr-down" in line and "-0.009" in line for line in dropped)
    assert any("larger-encoder" in line and "failed" in line for line in lines)
    # children sit below their parents: the winner is indented deeper than its parent
    indent = {name: next(len(ln) - len(ln.lstrip(" │├└─")) for ln in lines if f" {name} " in f" {ln} ")
              for name in ("baseline", "finetune", "contrastive", "augment-paraphrase")}
    assert indent["baseline"] < indent["finetune"] < indent["contrastive"] < indent["augment-paraphrase"]
    assert render_tree(view).label is not None


def test_empty_and_partial_views_render():
    for empty in ({}, {"run": {"id": 1}, "nodes": [], "findings": [], "decisions": [], "confusions": [],
                       "per_class": {}}):
        page = render_html(empty)
        assert "No experiments recorded." in page and "No learning curves." in page
        assert "<g class=\"node" not in page
        assert "run #" in tree_text(empty)
    bare = {"nodes": [{"id": 1, "name": "only", "parent_id": None}]}  # no pipeline, scores, curve or status
    assert 'data-name="only"' in render_html(bare) and "only" in tree_text(bare)


def test_forest_survives_missing_parents_and_cycles():
    nodes = [{"id": 1, "parent_id": 3}, {"id": 2, "parent_id": 1}, {"id": 3, "parent_id": 2},
             {"id": 4, "parent_id": 99}]
    roots, children = forest(nodes)
    assert roots == [4, 1]
    placed = roots + [k for kids in children.values() for k in kids]
    assert sorted(placed) == [1, 2, 3, 4]
    page = render_html({"nodes": nodes})
    assert page.count('<g class="node') == 4 and page.count('<g class="edge') == 2


def test_write_report_replaces_atomically(view, tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    assert write_report(view, target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_page_sets_each_candidates_score_against_its_measured_speed(view):
    from adaptloop.report.tradeoff import points, tradeoff_section

    assert tradeoff_section(view["nodes"], "accuracy") == ""  # nothing measured: no section
    speeds = {1: 310.0, 2: 95.5, 4: 40.2, 5: 12.0}  # node 5 failed: no score, so no point
    nodes = [{**n, "texts_per_second": speeds.get(n["id"])} for n in view["nodes"]]
    assert [(n["id"], s, split) for n, s, _, split in points(nodes, "accuracy")] == \
        [(1, 310.0, "dev"), (2, 95.5, "dev"), (4, 40.2, "dev")]
    page = render_html({**view, "nodes": nodes})
    section = page[page.index('<section id="tradeoff">'):]
    section = section[:section.index("</section>")]
    assert section.count('class="point"') == 3 and "contrastive ★" in section
    assert "0.9210" in section and "40.2" in section and "texts a second" in section
    rows = re.findall(r"<tr><td>([^<]+)</td>", section)
    assert rows == ["baseline", "finetune", "contrastive ★"]  # fastest first


def test_the_terminal_prints_reasons_and_texts_as_written_not_as_markup():
    """A reason names settings as `[serve] min_throughput`; a text may hold `[card]`: rich must not eat them."""
    from rich.console import Console

    from adaptloop.report import terminal

    console = Console(record=True, width=400)
    old = terminal.out
    terminal.out = console
    try:
        terminal.show_models({"versions": [], "events": [
            {"at": "2026-12-05T03:59:47", "version": "v3", "event": "promoted", "alias": "production",
             "reason": "[serve] min_throughput 150 rules out v1"}]})
        terminal.show_predictions({"predictions": [
            {"text": "my [card] is late", "label": "card_arrival", "score": 0.9,
             "top": [{"label": "card_arrival", "score": 0.9}, {"label": "[other]", "score": 0.1}]}]})
    finally:
        terminal.out = old
    text = console.export_text()
    assert "[serve] min_throughput 150" in text and "my [card] is late" in text and "[other] 0.10" in text
