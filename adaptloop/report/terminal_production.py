"""The terminal, production side: how traces, an improve cycle, a rollback, the server and the bench print.

Renderers of the plain dicts the commands get back; they decide nothing. The consoles are
:mod:`adaptloop.report.terminal`'s (``out`` for results, ``err`` for messages).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from adaptloop.report.terminal import err, out

__all__ = ["show_adaptft", "show_bench_log", "show_dashboard", "show_generated", "show_improve", "show_improve_import",
           "show_rollback", "show_serving", "show_trace_audit", "show_trace_import", "show_trace_quarantine",
           "show_trace_summary", "show_traces", "show_waiting"]


def _by_count(counts: dict[str, int]) -> str:
    return "; ".join(f"{k}: {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def show_trace_summary(report: dict[str, Any]) -> None:
    """How many traces, with feedback, by triage verdict, and the poisonous ones by kind."""
    total, with_fb, kinds, quarantined = (report[k] for k in ("traces", "with_feedback", "poison_by_kind",
                                                                "quarantined_lines"))
    out.print(f"{total} traces, {with_fb} with feedback; {quarantined} malformed lines quarantined")
    for k, n in sorted(report["by_triage"].items(), key=lambda kv: -kv[1]):
        out.print(f"  {k:<13} {n}")
    if kinds:
        out.print("poisonous (kept, never trained on): " + ", ".join(f"{k} {n}" for k, n in kinds.items())
                  + "; list them with `adaptloop traces list --triage poison`")


def show_trace_audit(rows: list[dict[str, Any]]) -> None:
    """Per run and set: traces that went in, how many the triage doubted, and why."""
    if not rows:
        out.print("no trace has gone into a training, dev or eval set yet (`adaptloop improve` puts them there)")
        return
    t = Table(title="traces per set, and what the triage doubted")
    for col in ("run", "set", "traces", "doubted", "leaked poison", "why"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["run_id"]), r["set"], str(r["traces"]), str(r["doubted"]), str(r["leaked_poison"]),
                  escape(_by_count(r["why"])))
    out.print(t)


def show_trace_import(r: dict[str, Any]) -> None:
    out.print(f"{r['read']} traces read: {r['new']} new, {r['already_stored']} already stored; "
              f"{r['quarantined']} malformed lines quarantined"
              + (" (see `adaptloop traces quarantine`)" if r["quarantined"] else ""))


def show_traces(rows: list[dict[str, Any]], triage: str | None) -> None:
    """One row per trace: what the model said, the feedback, the verdict and why."""
    t = Table(title=f"traces{' (' + triage + ')' if triage else ''}")
    for col in ("id", "input", "output", "feedback", "triage", "why"):
        t.add_column(col, overflow="fold")
    for r in rows:
        out_ = r["output"] or {}
        said = out_.get("label") or (f"{len(out_['entities'])} entities" if "entities" in out_ else "-")
        fb = r["feedback"]
        given = fb["label"] or (f"{len(fb['entities'])} entities" if "entities" in fb else fb["verdict"]) or "-"
        t.add_row(r["id"][:12], r["input"][:60], str(said), str(given), r["triage"] or "unjudged",
                  escape(r["reason"] or ""))
    out.print(t)


def show_trace_quarantine(report: list[dict[str, Any]]) -> None:
    if not report:
        out.print("no quarantined trace lines")
    for q in report:
        out.print(f"{escape(q['file'])}:{q['line']}: {escape(q['reason'])}")


def show_improve_import(r: dict[str, Any]) -> None:
    """`improve --traces`: what the import added, before the cycle starts."""
    err.print(f"imported {r['new']} new traces ({r['already_stored']} already stored, "
              f"{r['quarantined']} quarantined)")


def show_waiting(n: int, needed: int) -> None:
    """`improve --watch`: not enough new failures yet."""
    err.print(f"{n} new failures with feedback; waiting for {needed}")


def show_improve(r: dict[str, Any]) -> None:
    """One improve cycle: triage, drift, taxonomy, curriculum, the gate, audit and the decision."""
    t = r["triage"]
    out.print("[bold]triage[/] " + ", ".join(f"{k} {n}" for k, n in sorted(t.items(), key=lambda kv: -kv[1]))
              + (" — poison: " + ", ".join(f"{k} {n}" for k, n in r["poison"].items()) if r["poison"] else ""))
    if r["traces"].get("drift_examples"):
        out.print(f"[bold]drift[/] {t.get('out_of_scope', 0)} traces far from every known class (never trained on), "
                  f"e.g. {escape(r['traces']['drift_examples'][0][:70])!r}")
    if r["taxonomy"]:
        out.print("[bold]failure taxonomy[/]")
        for c in r["taxonomy"][:8]:
            ex = c["examples"][0]
            out.print(f"  {c['count']:>5}  {escape(c['name'])}   e.g. {escape(ex['text'][:60])!r}: "
                      f"{ex['pred']} → {ex['label']}")
    if r["curriculum"]:
        c = r["curriculum"]
        out.print(f"[bold]curriculum[/] {c['traces_train']} traces + {c['replay']} replay + {c['hard_negatives']} "
                  f"hard negatives + {c['pattern_variants']} variants = {c['train']} train; checkpoint eval set "
                  f"{c['checkpoint_eval']} traces")
    if r["gate"]:
        _show_gate(r["gate"])
    for s in r.get("checkpoint", []):
        out.print(f"[bold]new checkpoint[/] {s['eval_set']} (n={s['n']}, binding from the next cycle): "
                  f"{s['incumbent']:.4f} → {s['candidate']:.4f}, {s['broken']} broken, {s['fixed']} fixed")
    for a in r.get("audit", []):
        why = _by_count(a["why"])
        out.print(f"[bold]audit[/] {a['set']}: {a['traces']} traces, {a['doubted']} doubted by triage"
                  + (f" ({escape(why)})" if why else "") + " — `adaptloop traces audit`")
    colour = {"promoted": "green", "refused": "yellow"}.get(r["decision"], "white")
    out.print(f"[bold {colour}]{r['decision']}[/] {escape(r['reason'])}  ({r['wall_seconds']:.0f}s)")


def _show_gate(gate: dict[str, Any]) -> None:
    for s in gate["sets"]:
        out.print(f"[bold]gate[/] {s['eval_set']} (n={s['n']}): {s['incumbent']:.4f} → {s['candidate']:.4f} "
                  f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}], {len(s['broken'])} broken, {s['fixed']} fixed")
        for b in s["broken"][:5]:
            out.print(f"      broke: {escape(b['text'][:70])!r} ({b['label']}: {b['was']} → {b['now']})")
    if p := gate.get("pooled"):
        out.print(f"[bold]gate[/] {p['eval_set']} (n={p['n']}): {p['incumbent']:.4f} → {p['candidate']:.4f} "
                  f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] (noise rule only)")


def show_rollback(r: dict[str, Any]) -> None:
    out.print(f"production: {r['from']} → {r['to']} (rolled back; a running `adaptloop serve` switches within "
              "a second)")


def show_serving(root: Path, host: str, port: int) -> None:
    """`adaptloop serve`: where the server listens, printed before it starts."""
    err.print(f"serving production from {root} on http://{host}:{port} (dashboard at /; "
              "Ctrl-C stops; queued traces are written first)")


def show_dashboard(root: Path, host: str, port: int) -> None:
    """`adaptloop ui`: where the dashboard listens, printed before it starts."""
    err.print(f"dashboard for {root} on http://{host}:{port}/ (Ctrl-C stops)")


def show_bench_log(message: str) -> None:
    """A line of the bench's own log, on stderr as it is (no highlighting)."""
    err.print(message, highlight=False)


def show_adaptft(out_dir: Path) -> None:
    """AdaptFT-Bench: its markdown table on stdout, where the files are on stderr."""
    sys.stdout.write((out_dir / "table.md").read_text(encoding="utf-8"))
    err.print(f"results: {out_dir / 'results.json'}, {out_dir / 'table.md'}, {out_dir / 'plot.html'}")


def show_generated(written: dict[str, dict[str, str]], out_dir: Path) -> None:
    """`bench adaptft generate`: the files written per scenario."""
    for name, files in written.items():
        out.print(f"{name}: " + ", ".join(Path(f).name for f in files.values()) + f" in {out_dir / name}")
