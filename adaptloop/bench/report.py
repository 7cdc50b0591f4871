"""AdaptFT-Bench results as a summary against the targets, a Markdown table and an HTML plot."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

METHODS = ("agent", "naive", "naive-latest", "oracle")
NAIVE = ("naive", "naive-latest")  # seed + all feedback so far; seed + the latest stage's feedback
PRESERVE_TOLERANCE = 0.005  # "improves or preserves": no drop over half a point
NAIVE_LOSS = 0.10  # naive retraining "loses" when it drops this much somewhere
POISON_RECALL, POISON_PRECISION = 0.9, 0.8


def _ran(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in results if r.get("stages")]


def poison_quality(r: Mapping[str, Any]) -> dict[str, float]:
    """The agent's poison precision / recall over every stage of one scenario."""
    tp = sum(s["agent"]["triage"]["tp"] for s in r["stages"])
    fp = sum(s["agent"]["triage"]["fp"] for s in r["stages"])
    fn = sum(s["agent"]["triage"]["fn"] for s in r["stages"])
    return {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
            "tp": tp, "fp": fp, "fn": fn}


def summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's targets at stage 3: agent improves or preserves in every scenario, naive
    loses ≥ 10 points somewhere, poison recall ≥ 0.9 and precision ≥ 0.8 across scenarios."""
    ran = _ran(results)
    agent_delta = {r["scenario"]: r["stages"][-1]["agent"]["metric"] - r["base"]["metric"] for r in ran}
    naive_worst = {m: {r["scenario"]: worst - r["base"]["metric"] for r in ran
                       if (worst := _worst(r, m)) is not None} for m in NAIVE}
    q = [poison_quality(r) for r in ran]
    tp, fp, fn = (sum(x[k] for x in q) for k in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    preserved = [n for n, d in agent_delta.items() if d >= -PRESERVE_TOLERANCE]
    return {"scenarios_run": len(ran), "scenarios_listed": len(results),
            "agent_stage3_delta": {k: round(v, 4) for k, v in agent_delta.items()},
            "agent_improves_or_preserves": f"{len(preserved)}/{len(results)}",
            "naive_worst_delta": {m: {k: round(v, 4) for k, v in w.items()} for m, w in naive_worst.items()},
            "naive_loses_10_somewhere": any(d <= -NAIVE_LOSS for w in naive_worst.values() for d in w.values()),
            "poison_precision": round(precision, 4), "poison_recall": round(recall, 4),
            "poison_targets_met": recall >= POISON_RECALL and precision >= POISON_PRECISION}


def _worst(r: Mapping[str, Any], method: str) -> float | None:
    """A method's lowest metric over the stages (None: a result from before the method existed)."""
    got = [s[method]["metric"] for s in r["stages"] if method in s]
    return min(got) if got else None


def _naive_cell(r: Mapping[str, Any], method: str) -> str:
    last, worst = r["stages"][-1].get(method), _worst(r, method)
    if last is None or worst is None:
        return "–"
    return f"{last['metric']:.3f} / {worst:.3f} ({_signed(worst - r['base']['metric'])})"


def _cells(st: Mapping[str, Any], method: str) -> str:
    m = st.get(method)
    return f"{m['metric']:.3f} | {m['broken']}" if m else "– | –"


def table_md(doc: Mapping[str, Any]) -> str:
    """The headline table (stage 3 per scenario) and the per-stage detail."""
    results = doc["scenarios"]
    lines = ["# AdaptFT-Bench" + (" (quick)" if doc.get("quick") else ""), "",
             f"Seed {doc['seed']}; {doc['sizes']['per_stage']} logs per stage, poison "
             + " → ".join(f"{r:.0%}" for r in doc["rates"])
             + f"; metric on {doc['sizes']['test_n']} examples of the official test split (seeded sample).", "",
             "| scenario | encoder | metric | base | agent (stage 3) | naive (stage 3 / worst) "
             "| naive-latest (stage 3 / worst) | oracle (stage 3) | agent decisions | poison P / R |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        enc = r["encoder"].rsplit("/", 1)[-1]
        if not r.get("stages"):
            lines.append(f"| {r['scenario']} | {enc} | – | – | not run: {r.get('skipped', '')} | | | | | |")
            continue
        base, last = r["base"]["metric"], r["stages"][-1]
        q = poison_quality(r)
        decisions = " ".join(("rollback+" if s["agent"].get("rolled_back") else "") + s["agent"]["decision"]
                             for s in r["stages"])
        lines.append(f"| {r['scenario']} | {enc} | {r['metric']} | {base:.3f} | {last['agent']['metric']:.3f} "
                     f"({_signed(last['agent']['metric'] - base)}) | {_naive_cell(r, 'naive')} "
                     f"| {_naive_cell(r, 'naive-latest')} | {last['oracle']['metric']:.3f} | {decisions} "
                     f"| {q['precision']:.2f} / {q['recall']:.2f} |")
    s = doc["summary"]
    lines += ["", f"Targets: agent improves or preserves (no drop over 0.5 points) in "
              f"{s['agent_improves_or_preserves']}; naive loses ≥ 10 points somewhere: "
              f"{'yes' if s['naive_loses_10_somewhere'] else 'no'}; poison precision {s['poison_precision']:.2f}, "
              f"recall {s['poison_recall']:.2f} across scenarios.", "", "## Per stage", "",
              "| scenario | stage | poison | agent | broken | decision | naive | broken | naive-latest | broken "
              "| oracle | broken | poison P / R | agent wall s |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _ran(results):
        for st in r["stages"]:
            a, t = st["agent"], st["agent"]["triage"]
            decision = ("rollback+" if a.get("rolled_back") else "") + a["decision"]
            lines.append(f"| {r['scenario']} | {st['stage']} | {st['poison_rate']:.0%} | {a['metric']:.3f} | "
                         f"{a['broken']} | {decision} | {_cells(st, 'naive')} | {_cells(st, 'naive-latest')} "
                         f"| {_cells(st, 'oracle')} | {t['precision']:.2f} / {t['recall']:.2f} | {a['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _signed(x: float) -> str:
    return f"{x * 100:+.1f} pts"


def plot_html(doc: Mapping[str, Any]) -> str:
    """One line chart per scenario: the primary metric per stage per method (stage 0 = base)."""
    from adaptloop.report.html import CSS, chart_svg

    figures = []
    for r in _ran(doc["scenarios"]):
        series = {m: [(0.0, r["base"]["metric"])] + [(float(s["stage"]), s[m]["metric"]) for s in r["stages"]]
                  for m in METHODS if all(m in s for s in r["stages"])}
        title = f"{r['scenario']}: {r['metric']} per stage"
        figures.append(f"<figure>{chart_svg({'id': r['scenario']}, 'stage', False, series, title=title)}</figure>")
    body = "".join(figures) or '<p class="empty">no scenario ran</p>'
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>AdaptFT-Bench</title><style>{CSS}</style>"
            f"</head><body><main><header><h1>AdaptFT-Bench</h1><p>{html.escape(_caption(doc))}</p></header>"
            f"<section class='charts'>{body}</section></main></body></html>")


def _caption(doc: Mapping[str, Any]) -> str:
    return (f"seed {doc['seed']}, poison " + " → ".join(f"{r:.0%}" for r in doc["rates"])
            + " per stage; agent = improve per stage, naive = retrain on the seed + all feedback so far, "
            "naive-latest = on the seed + the latest stage's feedback, oracle = only the fixable logs")
