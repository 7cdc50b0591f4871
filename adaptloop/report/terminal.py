"""The terminal: the two consoles, JSON output, progress bars, and how each model-side result prints.

``out`` is stdout (tables, results); ``err`` is stderr (progress, messages), so that ``--json`` output on
stdout stays exactly one JSON object. Renderers take the plain dicts the commands get back and print them;
they decide nothing. Production-side results (traces, improve, serve, bench) print from
:mod:`adaptloop.report.terminal_production`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adaptloop.report.tree import render_tree

if TYPE_CHECKING:
    from adaptloop.data.generation import LoadedSamples
    from adaptloop.data.sources import Loaded
    from adaptloop.workspace import Workspace

__all__ = ["emit_json", "err", "nodes_table", "out", "progress", "score", "show_cold_start", "show_convert",
           "show_doctrine", "show_eval", "show_init", "show_models", "show_predictions", "show_quarantined",
           "show_report_written", "show_run_tree", "show_runs", "show_spec"]

err = Console(stderr=True)
out = Console(width=None if Console().is_terminal else 140)


def emit_json(obj: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout (what every ``--json`` prints)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


@contextmanager
def progress() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """A progress-bar factory on stderr (silent when stderr is not a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Progress(TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                    disable=not err.is_terminal)

    def factory(description: str, total: int | None) -> Callable[[int], None]:
        task = bars.add_task(description, total=total)
        return lambda n: bars.advance(task, n)

    with bars:
        yield factory


def score(metrics: dict[str, Any] | None) -> str:
    """A node's primary score: entity F1 for extraction, accuracy for classification, exact match,
    pass@1 or ROUGE-L for generation."""
    if not metrics:
        return "-"
    short = {"f1": "F1", "accuracy": "acc", "exact_match": "EM", "pass_at_1": "pass@1", "rouge_l": "ROUGE-L"}
    key = next((k for k in short if metrics.get(k) is not None), None)
    return f"{metrics[key]:.4f} {short[key]}" if key else "-"


def nodes_table(nodes: list[dict[str, Any]], title: str) -> Table:
    """A run's nodes, one row each, with why each was tried in the caption."""
    t = Table(title=title, show_lines=False)
    for col in ("id", "node", "parent", "strategy", "recipe", "dev", "eval", "sec", "texts/s", "status", "by"):
        t.add_column(col)
    t.caption = "\n".join(escape(f"#{n['id']} {n['name']} ({n['intervention']}): {n['reason']}")
                          for n in nodes)
    t.caption_justify = "left"
    for n in nodes:
        t.add_row(str(n["id"]), n["name"], str(n["parent_id"] or "-"), n["pipeline"]["strategy"],
                  n["pipeline"]["recipe"], score(n["dev"]), score(n["eval"]),
                  f"{n['train_seconds']:.0f}", f"{n['texts_per_second']:.0f}" if n.get("texts_per_second") else "-",
                  n["status"], n.get("proposer") or "doctrine")
    return t


def show_run_tree(ws: Workspace, run_id: int) -> None:
    """The run's experiment graph as a tree (gains green, drops red, ★ winner)."""
    from adaptloop.report.view import build_view  # the store and metrics: loaded only when a tree is drawn

    out.print(render_tree(build_view(ws, run_id)))


def show_init(root: Path) -> None:
    err.print(f"workspace ready: {root}  (settings in adaptloop.toml)")


def show_quarantined(loaded: Loaded | LoadedSamples) -> None:
    """One warning line when a data file had malformed lines (they were set aside, with a reason)."""
    if loaded.quarantined:
        q = loaded.quarantined[0]
        err.print(f"[yellow]{len(loaded.quarantined)} malformed lines quarantined[/] from {loaded.source} "
                  f"(first: line {q.line_no}: {q.reason})")


def show_spec(spec: dict[str, Any]) -> None:
    """The task the agent read from the prompt and the data: family, metrics, labels."""
    labels = spec["labels"]
    shown = ", ".join(labels[:8]) + (f", … ({len(labels)} in all)" if len(labels) > 8 else "")
    err.print(f"[bold]task[/] {spec['name']}  family={spec['family']}  "
              f"primary metric={spec['primary_metric']} (+ {', '.join(spec['secondary_metrics'])})")
    err.print(f"[bold]labels[/] {shown}")
    if spec.get("out_of_scope_label"):
        err.print(f"[bold]out-of-scope label[/] {spec['out_of_scope_label']}")


def show_draft(d: dict[str, Any]) -> None:
    """A task drafted from the prompt, for confirmation: family, each label with its definition, edge cases."""
    err.print(f"[bold]drafted task[/] family={d['family']}  data by {escape(d['teacher'])}")
    for label in d["labels"]:
        err.print(f"  [cyan]{escape(label)}[/]: {escape(d['definitions'].get(label, ''))}")
    for rule in d.get("edge_cases", []):
        err.print(f"  [dim]edge case:[/] {escape(rule)}")


def show_note(text: str) -> None:
    err.print(f"[dim]{escape(text)}[/]")


def show_cold_start(ws: Workspace, kind: str, r: dict[str, Any]) -> None:
    """What `adaptloop new` did: the data, the graph, why it stopped and what was promoted."""
    c = r["curation"]
    if kind == "generation":
        _show_generation_data(r)
    elif c:
        err.print(f"[bold]data[/] {c['source']} examples → eval {c['eval']} (frozen "
                  f"{r['eval_set_id']}), dev {c['dev']}, train {c['train']}; removed "
                  f"{c['exact_or_conflicting_duplicates']} duplicates, {c['eval_overlap']} eval "
                  f"overlaps, {c['near_duplicates']} near-duplicates; {c['label_issues']} label "
                  "issues (curated recipe)")
    show_run_tree(ws, r["run_id"])
    out.print(f"stopped: {escape(r['stop_reason'])}  ({r['wall_seconds']:.0f}s); why each node was tried: "
              f"`adaptloop runs {r['run_id']}`, the whole story: `adaptloop report {r['run_id']}`")
    if r["winner"] and not r["winner"].get("promoted", True):
        out.print(f"[bold yellow]not promoted: v{r['version']}[/] ({r['winner']['node']}) is registered "
                  "but no model is in production")
        return
    if not r["winner"]:
        err.print(f"[red]nothing was promoted:[/] no pipeline finished; `adaptloop runs {r['run_id']}` shows each "
                  "node's error")
        return
    if r["winner"]:
        _show_promoted(r)
        base = r["winner"].get("constant_baseline") or {}
        if base.get("not_beyond_noise"):
            lo, hi = base["gain_interval"]
            err.print(f"[yellow]warning:[/] it is not better than predicting {escape(base['predicts'])} beyond noise "
                      f"(95% interval of the gain [{lo:+.4f}, {hi:+.4f}]); give it more budget, more data or a larger "
                      "encoder")


def _show_promoted(r: dict[str, Any]) -> None:
    w = r["winner"]
    extra = ""
    if r["spec"]["family"] == "extraction":
        e = w["eval"]
        out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen eval "
                  f"entity F1 {e['f1']:.4f} (precision {e['precision']:.4f}, recall {e['recall']:.4f}), "
                  f"macro-F1 {e['macro_f1']:.4f}")
        return
    if r["spec"]["family"] == "generation":
        metric = r["spec"]["primary_metric"]
        out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen eval {metric} "
                  f"{w['eval'][metric]:.4f} (format ok {w['eval']['format_ok']:.2f})")
        return
    if "in_scope_accuracy" in w["eval"]:
        extra = (f", in-scope accuracy {w['eval']['in_scope_accuracy']:.4f}, oos recall "
                 f"{w['eval']['oos_recall']}")
    out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen "
              f"eval accuracy {w['eval']['accuracy']:.4f}, macro-F1 "
              f"{w['eval']['macro_f1']:.4f}{extra}")


def _show_generation_data(r: dict[str, Any]) -> None:
    """The data line of a generation task: its samples, output kind, splits and model."""
    c, spec = r["curation"], r["spec"]
    err.print(f"[bold]data[/] {c['source']} samples ({c['output_kind']}) → eval {c['eval']} (frozen "
              f"{r['eval_set_id']}), dev {c['dev']}, train {c['train']}; {c.get('unusable_targets', 0)} targets "
              f"that cannot be right removed; model {spec['output']['base']}")


def show_eval(r: dict[str, Any], data: Path) -> None:
    """A model's scores on a labelled file: per-class (or per-type) table and the headline metrics."""
    if r.get("quarantined"):
        err.print(f"[yellow]{r['quarantined']} malformed lines of {data} were skipped and not scored[/]; the scores "
                  "below cover the rest only (fix those lines to score them)")
    if "kind" in r:
        metric = next(k for k in ("exact_match", "pass_at_1", "rouge_l") if k in r)
        for f in r["findings"]:
            out.print(f"  {f['kind']}: {escape(f['summary'])}")
        out.print(f"[bold]{r['model']} on {data} ({r['n']} samples): {metric} {r[metric]:.4f}  format ok "
                  f"{r['format_ok']:.4f}[/]")
        return
    t = Table(title=f"{r['model']} on {data} ({r['n']} examples)")
    for col in ("label", "precision", "recall", "f1", "support"):
        t.add_column(col)
    for lab, m in sorted(r.get("per_class", r.get("per_type", {})).items(), key=lambda kv: kv[1]["f1"]):
        if m["support"]:
            t.add_row(lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
                      str(m["support"]))
    out.print(t)
    if "per_type" in r:
        out.print(f"[bold]entity micro-F1 {r['f1']:.4f}  precision {r['precision']:.4f}  recall "
                  f"{r['recall']:.4f}  macro-F1 {r['macro_f1']:.4f}[/]")
        return
    line = f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}"
    if "in_scope_accuracy" in r:
        line += f"  in-scope accuracy {r['in_scope_accuracy']:.4f}  oos recall {r['oos_recall']}"
    out.print(f"[bold]{line}[/]")


def show_predictions(r: dict[str, Any]) -> None:
    """One line per text: the label and score (and the runners-up), its entities, or the completion."""
    for p in r["predictions"]:
        if "output" in p:
            out.print(f"{escape(p['output'])}  ← {escape(p['text'])}")
            continue
        if "entities" in p:
            found = "; ".join(f"{e['label']} '{e['text']}' [{e['start']}:{e['end']}] {e['score']:.2f}"
                              for e in p["entities"]) or "no entities"
            out.print(escape(f"{found}  ← {p['text']}"))
            continue
        alt = ", ".join(f"{a['label']} {a['score']:.2f}" for a in p["top"][1:])
        out.print(f"[bold]{escape(p['label'])}[/] {p['score']:.3f}  ← {escape(p['text'])}   (next: {escape(alt)})")


def show_runs(ws: Workspace, runs: list[dict[str, Any]], graph: bool) -> None:
    """Each run as a table of nodes and its decisions, or (``graph``) as a tree."""
    if not runs:
        err.print("no runs yet; start one with `adaptloop new PROMPT --data FILE`")
    if graph:
        for r in runs:
            show_run_tree(ws, r["id"])
        return
    for r in runs:
        out.print(nodes_table(r["nodes"], f"run {r['id']} ({r['status']}, "
                                          f"{r['spent_s']:.0f}s of {r['budget_s']:.0f}s)"))
        llm = r.get("llm") or {}
        if llm.get("requests"):
            roles = ", ".join(f"{n} {role}" for role, n in sorted(llm.get("by_role", {}).items()))
            out.print(f"  LLM: {llm['requests']} requests ({roles}), {llm['followed']} followed (the doctrine decided "
                      f"the rest); {llm['prompt_tokens']:,} prompt + {llm['completion_tokens']:,} answer tokens"
                      + (f", cost {llm['cost']:.4f}" if llm["cost"] else ""))
        for d in r["decisions"]:
            out.print(f"  [dim]{d['at'][11:19]}[/] {d['kind']}: {escape(d['reason'])}")


def show_export(r: dict[str, Any]) -> None:
    """What the ONNX export tried, and what serves."""
    t = Table(title=f"export of {r['version']} on eval set {r['eval_set']} (n={r['n']})")
    for col in ("precision", "same prediction as torch", "metric", "scoring s", "passed"):
        t.add_column(col)
    metric = next(k for k in r["torch"] if k != "seconds")
    t.add_row("torch", "-", f"{r['torch'][metric]:.4f}", f"{r['torch']['seconds']:.1f}", "-")
    for x in r["tried"]:
        t.add_row(x["precision"], f"{x['agreement']:.2%}", f"{x[metric]:.4f}", f"{x['seconds']:.1f}",
                  "[green]yes[/]" if x["passed"] else "[red]no[/]")
    out.print(t)
    out.print(escape(r["reason"]))


def show_distill(r: dict[str, Any]) -> None:
    """A student against its teacher: speed, agreement, the gate, the decision."""
    fit, speed = r["fit"], r["texts_per_second"]
    t = Table(title=f"{r['student']}: {fit['layers']}-layer student of {r['teacher']}")
    for col in ("model", "texts/s (torch)", "eval sets"):
        t.add_column(col)
    sets = r["gate"]["sets"]
    t.add_row(r["teacher"], f"{speed['teacher']:.0f}", ", ".join(f"{s['incumbent']:.4f}" for s in sets))
    t.add_row(r["student"], f"{speed['student']:.0f}", ", ".join(f"{s['candidate']:.4f}" for s in sets))
    out.print(t)
    out.print(f"trained on {fit['texts']} texts ({fit['with_gold']} with gold labels) in {fit['seconds']:.0f}s; "
              f"dev {fit['selected_on'].removeprefix('dev_')} {fit['dev_score_before']:.3f} → {fit['dev_score']:.3f}, "
              f"agreement with the teacher {fit['dev_agreement']:.3f} "
              f"({fit['stop']})")
    out.print(f"[bold]{r['decision']}[/]: {escape(r['reason'])}")


def show_report_written(r: dict[str, Any]) -> None:
    err.print(f"report for run {r['run']}: {r['report']}  (open it in a browser; it needs no network)")


def show_doctrine(report: dict[str, Any]) -> None:
    """The regimes, the intervention catalogue, the generation moves and what was learned per family."""
    t = Table(title="doctrine: regimes (checked top to bottom)")
    for col in ("regime", "when", "families, preferred first", "rule"):
        t.add_column(col)
    for r in report["regimes"]:
        t.add_row(r["name"], r["when"], " > ".join(r["prefer"]) or "-", r["says"])
    out.print(t)
    t = Table(title="interventions")
    for col in ("name", "family", "tasks", "hypothesis"):
        t.add_column(col)
    short = {"classification": "cls", "extraction": "ext"}
    for i in report["interventions"]:
        tasks = ", ".join(short[x] + ("*" if x in i["standing"] else "") for x in i["tasks"])
        t.add_row(i["name"], i["family"], tasks, i["hypothesis"])
    t.caption = ("tasks: cls = classification, ext = extraction; * considered for every node of that task, "
                 "even without a finding that suggests it")
    out.print(t)
    t = Table(title="generation cold start (small causal LMs), in order")
    for col in ("move", "when", "what"):
        t.add_column(col)
    for g in report["generation"]:
        t.add_row(g["name"], g["when"], g["does"])
    out.print(t)
    if not report["learned"]:
        out.print("nothing learned yet: outcomes are recorded as runs try interventions")
    for fam, d in report["learned"].items():
        t = Table(title=f"learned on '{fam}' tasks (dev gain over the parent node)")
        for col in ("intervention", "tried", "mean gain", "mean seconds"):
            t.add_column(col)
        for k, v in d.items():
            colour = "green" if v["mean_gain"] > 0 else "red" if v["mean_gain"] < 0 else ""
            t.add_row(k, str(v["n"]), f"[{colour}]{v['mean_gain']:+.4f}[/]" if colour else "0",
                      f"{v['mean_seconds']:.0f}")
        out.print(t)
    for fam, d in report.get("portfolio", {}).items():
        tasks = ", ".join(f"{k} ({v['n_train']} examples, {v['n_classes']} classes)" for k, v in d["tasks"].items())
        t = Table(title=f"shipped prior for '{fam}' tasks (benchmark outcomes; weighted by how alike a task is)",
                  caption=f"from {tasks}")
        for col in ("intervention", "outcomes", "mean gain"):
            t.add_column(col)
        for k, v in d["interventions"].items():
            t.add_row(k, str(v["n"]), f"{v['mean_gain']:+.4f}")
        out.print(t)


def show_convert(report: dict[str, Any]) -> None:
    out.print(f"wrote {report['written']} records to {report['output']}")
    for q in report["quarantined"]:
        err.print(f"[yellow]line {q['line']} not converted[/]: {escape(q['reason'])}")


def show_disk(report: dict[str, Any]) -> None:
    """One row per part of the workspace's state folder, what was removed, and what the options would free."""
    t = Table(title=f"disk: {report['workspace']}")
    for col, justify in (("part", "left"), ("count", "right"), ("size", "right"), ("removed by", "left")):
        t.add_column(col, justify=justify)
    for p in report["parts"]:
        if p["count"]:
            t.add_row(p["part"], str(p["count"]), human_bytes(p["bytes"]), p["removable_with"] or "kept")
    t.add_row("total", "", human_bytes(report["total_bytes"]), "")
    out.print(t)
    for part, r in report["removed"].items():
        out.print(f"removed {part}: {r['count']}, {human_bytes(r['bytes'])}")
    free = [f"`adaptloop disk {opt}` frees {human_bytes(b)}" for opt, b in report["removable_bytes"].items() if b]
    out.print("; ".join(free) if free else "nothing more to remove")


def human_bytes(n: float) -> str:
    """1.9 GB, 727.0 MB, 512 B (powers of 1000, as `du --si`)."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


def show_models(report: dict[str, Any]) -> None:
    """The registry: one row per version, then the events that moved the aliases."""
    t = Table(title="model versions")
    for col in ("version", "aliases", "node", "eval", "dev", "created"):
        t.add_column(col)
    for v in report["versions"]:
        t.add_row(v["version"], ",".join(v["aliases"]) or "-", str(v["node_id"]),
                  score(v["metrics"].get("eval")), score(v["metrics"].get("dev")),
                  v["created_at"][:19])
    out.print(t)
    for e in report["events"]:
        out.print(f"  {e['at'][:19]} {e['version']} {e['event']}"
                  f"{' → ' + e['alias'] if e['alias'] else ''}: {escape(e['reason'])}")
