"""The command line: thin commands that open a workspace and call one function each.

Every reporting command takes ``--json`` and then prints exactly one JSON object on stdout
(progress bars and messages go to stderr). Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from adaptloop.errors import AdaptloopError

# Offline by default: nothing may wait on a model hub (users with a hub can set it to 0).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

err = Console(stderr=True)
out = Console(width=None if Console().is_terminal else 140)


class _Group(TyperGroup):
    """Maps user errors to one line on stderr and exit code 2, Ctrl-C to 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdaptloopError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            err.print("interrupted; the store is consistent — `adaptloop new --resume` continues")
            ctx.exit(130)
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError

            if not isinstance(exc, SQLAlchemyError):
                raise
            first = str(exc).splitlines()[0]
            err.print("[red]error:[/] " + escape(f"the store failed ({first}); check [store] url in "
                      "adaptloop.toml and that the database is reachable"), highlight=False,
                      soft_wrap=True)
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    help="adaptloop: adapt small language models to a task, and keep them improving.\n\n"
         "Start with `adaptloop init ws`, then `adaptloop new PROMPT --data FILE` inside it.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)

WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", help="Workspace folder [default: $ADAPTLOOP_WORKSPACE, else the current "
                              "directory].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


@contextmanager
def _progress() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
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


def _open(workspace: Path | None):
    from adaptloop.workspace import Workspace

    return Workspace.open(workspace)


@app.command()
def init(
    path: Annotated[Path | None, typer.Argument(help="Folder to create [default: the workspace].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a workspace: adaptloop.toml (settings) and .adaptloop/ (store, artifacts)."""
    from adaptloop.config import resolve_workspace
    from adaptloop.workspace import init_workspace

    root = init_workspace(path or resolve_workspace(workspace))
    if as_json:
        _emit({"workspace": str(root), "config": str(root / "adaptloop.toml")})
    else:
        err.print(f"workspace ready: {root}  (settings in adaptloop.toml)")


def _show_spec(spec: dict[str, Any], curation: dict[str, Any] | None = None) -> None:
    labels = spec["labels"]
    shown = ", ".join(labels[:8]) + (f", … ({len(labels)} in all)" if len(labels) > 8 else "")
    err.print(f"[bold]task[/] {spec['name']}  family={spec['family']}  "
              f"primary metric={spec['primary_metric']} (+ {', '.join(spec['secondary_metrics'])})")
    err.print(f"[bold]labels[/] {shown}")
    if spec.get("out_of_scope_label"):
        err.print(f"[bold]out-of-scope label[/] {spec['out_of_scope_label']}")


def _score(metrics: dict[str, Any] | None) -> str:
    """A node's primary score: entity F1 for extraction, accuracy for classification, exact match,
    pass@1 or ROUGE-L for generation."""
    if not metrics:
        return "-"
    short = {"f1": "F1", "accuracy": "acc", "exact_match": "EM", "pass_at_1": "pass@1", "rouge_l": "ROUGE-L"}
    key = next((k for k in short if metrics.get(k) is not None), None)
    return f"{metrics[key]:.4f} {short[key]}" if key else "-"


def _nodes_table(nodes: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for col in ("id", "node", "parent", "strategy", "recipe", "dev", "eval", "sec", "status"):
        t.add_column(col)
    t.caption = "\n".join(escape(f"#{n['id']} {n['name']} ({n['intervention']}): {n['reason']}")
                          for n in nodes)
    t.caption_justify = "left"
    for n in nodes:
        t.add_row(str(n["id"]), n["name"], str(n["parent_id"] or "-"), n["pipeline"]["strategy"],
                  n["pipeline"]["recipe"], _score(n["dev"]), _score(n["eval"]),
                  f"{n['train_seconds']:.0f}", n["status"])
    return t


@app.command()
def new(
    prompt: Annotated[str | None, typer.Argument(help="The task in plain words.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", help="JSONL: {text, label} (classification) or {text, spans} / {tokens, tags} "
                             "(extraction; IOB2, IOB1 or BILOU tags).")] = None,
    eval_data: Annotated[Path | None, typer.Option(
        "--eval-data", help="Optional gold JSONL in the same format: the frozen eval set and dev are drawn "
                            "from it (half each) and it is never trained on.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Wall budget, e.g. 90s, 20m, 1h [default: adaptloop.toml].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last interrupted run.")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cold start: spec → frozen eval set → curation → search → promote the winner.

    The prompt and the data decide the task family: text + label is classification, text +
    spans or tokens + tags is extraction (a prompt like "detect PII" picks extraction when a
    file holds both). Trains several whole pipelines (data recipe × strategy × hyperparameters) within the
    budget, selects on a dev split, scores the winner on the frozen eval set and promotes
    it as `production`. Ctrl-C keeps the store consistent; `--resume` continues.
    """
    from adaptloop.agent.budget import parse_budget
    from adaptloop.agent.coldstart import ColdStart, cold_start, resumable_run
    from adaptloop.data.sources import load_for

    ws = _open(workspace)
    if resume:
        run_id = resumable_run(ws)
        with _progress() as progress:
            result = ColdStart(ws, run_id, progress=progress).run()
    else:
        if not prompt or data is None:
            raise AdaptloopError("`new` needs a PROMPT and --data FILE (or --resume); see "
                                 "`adaptloop new --help`")
        seconds = parse_budget(budget or ws.settings.agent.budget)
        from adaptloop.data.sources import family_for

        if family_for(data, prompt) == "generation":
            _new_generation(ws, prompt, data, seconds, as_json)
            return
        loaded = load_for(data, prompt)
        gold = load_for(eval_data, family=loaded.family) if eval_data is not None else None
        for part in (loaded, gold):
            if part is not None and part.quarantined:
                err.print(f"[yellow]{len(part.quarantined)} malformed lines quarantined[/] from {part.source} "
                          f"(first: line {part.quarantined[0].line_no}: {part.quarantined[0].reason})")
        from adaptloop.data.spec import infer_extraction_spec, infer_spec

        infer = infer_extraction_spec if loaded.family == "extraction" else infer_spec
        spec = infer(prompt, loaded.examples, source=str(data))
        _show_spec(spec.to_dict())
        with _progress() as progress:
            result = cold_start(ws, loaded, prompt, seconds, progress=progress, gold=gold)
    r = result.to_dict()
    if as_json:
        _emit(r)
        return
    c = r["curation"]
    if c:
        err.print(f"[bold]data[/] {c['source']} examples → eval {c['eval']} (frozen "
                  f"{r['eval_set_id']}), dev {c['dev']}, train {c['train']}; removed "
                  f"{c['exact_or_conflicting_duplicates']} duplicates, {c['eval_overlap']} eval "
                  f"overlaps, {c['near_duplicates']} near-duplicates; {c['label_issues']} label "
                  "issues (curated recipe)")
    from adaptloop.report.tree import render_tree
    from adaptloop.report.view import build_view

    out.print(render_tree(build_view(ws, r["run_id"])))
    out.print(f"stopped: {escape(r['stop_reason'])}  ({r['wall_seconds']:.0f}s); why each node was tried: "
              f"`adaptloop runs {r['run_id']}`, the whole story: `adaptloop report {r['run_id']}`")
    if r["winner"] and not r["winner"].get("promoted", True):
        out.print(f"[bold yellow]not promoted: v{r['version']}[/] ({r['winner']['node']}) is registered "
                  "but no model is in production")
        return
    if r["winner"]:
        w = r["winner"]
        extra = ""
        if r["spec"]["family"] == "extraction":
            e = w["eval"]
            out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen eval "
                      f"entity F1 {e['f1']:.4f} (precision {e['precision']:.4f}, recall {e['recall']:.4f}), "
                      f"macro-F1 {e['macro_f1']:.4f}")
            return
        if "in_scope_accuracy" in w["eval"]:
            extra = (f", in-scope accuracy {w['eval']['in_scope_accuracy']:.4f}, oos recall "
                     f"{w['eval']['oos_recall']}")
        out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen "
                  f"eval accuracy {w['eval']['accuracy']:.4f}, macro-F1 "
                  f"{w['eval']['macro_f1']:.4f}{extra}")


def _new_generation(ws, prompt: str, data: Path, seconds: float, as_json: bool) -> None:
    """`new` for a generation task (a causal LM; see agent.generation)."""
    from adaptloop.agent.generation import GenerationColdStart
    from adaptloop.data.generation import load_generation

    loaded = load_generation(data)
    if loaded.quarantined:
        q = loaded.quarantined[0]
        err.print(f"[yellow]{len(loaded.quarantined)} malformed lines quarantined[/] from {loaded.source} "
                  f"(first: line {q.line_no}: {q.reason})")
    with _progress() as progress:
        r = GenerationColdStart(ws, loaded, prompt, seconds, progress=progress).run().to_dict()
    if as_json:
        _emit(r)
        return
    c, spec = r["curation"], r["spec"]
    metric = spec["primary_metric"]
    err.print(f"[bold]data[/] {c['source']} samples ({c['output_kind']}) → eval {c['eval']} (frozen "
              f"{r['eval_set_id']}), dev {c['dev']}, train {c['train']}; model {spec['output']['base']}")
    t = Table(title=f"run {r['run_id']}: {len(r['nodes'])} nodes")
    for col in ("id", "node", "strategy", "recipe", f"dev {metric}", "format ok", "eval", "train s", "why"):
        t.add_column(col)
    for n in r["nodes"]:
        d = n["dev"] or {}
        t.add_row(str(n["id"]), n["name"], n["pipeline"]["strategy"], n["pipeline"]["recipe"],
                  f"{d.get(metric, 0):.4f}" if d else "-", f"{d.get('format_ok', 0):.2f}" if d else "-",
                  f"{n['eval'][metric]:.4f}" if n["eval"] else "", f"{n['train_seconds']:.0f}",
                  escape(n["reason"][:70]))
    out.print(t)
    out.print(f"stopped: {escape(r['stop_reason'])}  ({r['wall_seconds']:.0f}s); `adaptloop runs {r['run_id']}` "
              "has every decision")
    if r["winner"]:
        w = r["winner"]
        out.print(f"[bold green]promoted v{r['version']}[/] ({w['node']}) as production: frozen eval {metric} "
                  f"{w['eval'][metric]:.4f} (format ok {w['eval']['format_ok']:.2f})")


@app.command("eval")
def eval_(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled JSONL the model never saw.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Version (v3) or alias [default: production].")] = None,
    limit: Annotated[int, typer.Option(help="Generation: score only the first N records (0 = all).")] = 0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model on labelled data: accuracy, macro-F1 and a per-class table.

    For an extraction model: entity-level (seqeval, exact span) micro precision, recall and
    F1, macro-F1 and a per-type table. For a generation model: exact match of final answers
    (math, labels), pass@1 in the sandbox (code) or ROUGE-L (summaries), format compliance
    and the diagnosis of the failures.
    """
    from adaptloop.agent.predict import evaluate_file

    ws = _open(workspace)
    with _progress() as progress:
        r = evaluate_file(ws, data, model, progress=progress, limit=limit)
    if as_json:
        _emit(r)
        return
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


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="One or more texts to classify (or extract from).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Version or alias [default: production].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify texts — or, for an extraction model, find their entities (character offsets,
    labels and scores) — with the production model (or --model)."""
    from adaptloop.agent.predict import predict_texts

    r = predict_texts(_open(workspace), texts, model)
    if as_json:
        _emit(r)
        return
    for p in r["predictions"]:
        if "output" in p:
            out.print(f"{escape(p['output'])}  ← {escape(p['text'])}")
            continue
        if "entities" in p:
            found = "; ".join(f"{e['label']} '{e['text']}' [{e['start']}:{e['end']}] {e['score']:.2f}"
                              for e in p["entities"]) or "no entities"
            out.print(f"{found}  ← {p['text']}")
            continue
        alt = ", ".join(f"{a['label']} {a['score']:.2f}" for a in p["top"][1:])
        out.print(f"[bold]{p['label']}[/] {p['score']:.3f}  ← {p['text']}   (next: {alt})")


@app.command()
def runs(
    run: Annotated[int | None, typer.Argument(help="Show one run [default: all].")] = None,
    show_graph: Annotated[bool, typer.Option(
        "--graph", help="Draw each run's experiment graph as a tree (gains green, drops red, ★ winner).")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The experiment graph: every node, why it was tried, and its scores."""
    from adaptloop.agent.coldstart import _node_dict
    from adaptloop.errors import NotFoundError
    from adaptloop.store.db import EvalSetRow

    ws = _open(workspace)
    rows = [r for r in ws.store.runs() if run is None or r.id == run]
    if run is not None and not rows:
        raise NotFoundError(f"no run {run}; `adaptloop runs` lists them")
    report = []
    for r in rows:
        report.append({
            "id": r.id, "task_id": r.task_id, "kind": r.kind, "status": r.status,
            "budget_s": r.budget_s, "spent_s": round(r.spent_s, 1), "eval_set_id": r.eval_set_id,
            "eval_set_created_at": (ws.store.get(EvalSetRow, r.eval_set_id).created_at.isoformat()
                                    if r.eval_set_id else None),
            "started_at": r.started_at.isoformat(),
            "nodes": [_node_dict(n) for n in ws.store.nodes(r.id)],
            "decisions": [{"kind": d.kind, "reason": d.reason, "at": d.created_at.isoformat()}
                          for d in ws.store.decisions(r.id)],
        })
    if as_json:
        _emit({"runs": report})
        return
    if not report:
        err.print("no runs yet; start one with `adaptloop new PROMPT --data FILE`")
    if show_graph:
        from adaptloop.report.tree import render_tree
        from adaptloop.report.view import build_view

        for r in report:
            out.print(render_tree(build_view(ws, r["id"])))
        return
    for r in report:
        out.print(_nodes_table(r["nodes"], f"run {r['id']} ({r['status']}, "
                                            f"{r['spent_s']:.0f}s of {r['budget_s']:.0f}s)"))
        for d in r["decisions"]:
            out.print(f"  [dim]{d['at'][11:19]}[/] {d['kind']}: {escape(d['reason'])}")


@app.command()
def report(
    run: Annotated[int | None, typer.Argument(help="The run [default: the latest].")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", "-o", help="HTML file to write [default: WORKSPACE/reports/run-N.html].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page for a run: graph, curves, confusions, findings, decisions."""
    from adaptloop.report.html import write_report
    from adaptloop.report.view import build_view, latest_run

    ws = _open(workspace)
    run_id = run if run is not None else latest_run(ws)
    view = build_view(ws, run_id)
    path = write_report(view, out_path or ws.root / "reports" / f"run-{run_id}.html")
    if as_json:
        _emit({"run": run_id, "report": str(path), "nodes": len(view["nodes"]),
               "findings": len(view["findings"])})
    else:
        err.print(f"report for run {run_id}: {path}  (open it in a browser; it needs no network)")


@app.command()
def doctrine(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """What the agent does by default (regimes, interventions) and what it has learned across runs."""
    from sqlalchemy import select

    from adaptloop.agent.doctrine import REGIMES, STANDING, STANDING_EXTRACTION
    from adaptloop.agent.generation_moves import GENERATION_MOVES
    from adaptloop.search.interventions import CATALOGUE
    from adaptloop.store.db import Outcome

    ws = _open(workspace)
    families = sorted({o.family for o in ws.store.all(select(Outcome))})
    learned = {fam: ws.store.learned(fam) for fam in families}
    report = {
        "regimes": [{"name": r.name, "when": r.when, "prefer": list(r.prefer), "says": r.says} for r in REGIMES],
        "interventions": [{"name": i.name, "family": i.family, "tasks": list(i.tasks),
                           "standing": [t for t, names in (("classification", STANDING),
                                                           ("extraction", STANDING_EXTRACTION))
                                        if t in i.tasks and i.name in names],
                           "hypothesis": i.hypothesis.format(target="")} for i in CATALOGUE],
        "generation": [{"name": n, "when": w, "does": d} for n, w, d in GENERATION_MOVES],
        "learned": {fam: {k: {"n": n, "mean_gain": round(g, 5), "mean_seconds": round(c, 1)}
                          for k, (n, g, c) in sorted(d.items(), key=lambda kv: -kv[1][1])}
                    for fam, d in learned.items()},
    }
    if as_json:
        _emit(report)
        return
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
    if not learned:
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


@app.command()
def convert(
    data: Annotated[Path, typer.Argument(help="Entity JSONL: {text, spans} or {tokens, tags} (IOB2, IOB1, BILOU).")],
    to: Annotated[str, typer.Option("--to", help="Target format: 'spans' (character offsets) or 'tags' (IOB2).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the converted JSONL.")],
    as_json: JsonOpt = False,
) -> None:
    """Convert extraction data between text + character spans and tokens + IOB2 tags.

    Tags are read in any supported scheme and written as IOB2 over word units (words and
    single punctuation marks, split at every entity boundary). Malformed lines are not
    written; each is listed with its reason.
    """
    import json

    from adaptloop.data.sources import load_extraction
    from adaptloop.data.spans import spans_to_tags

    if to not in ("spans", "tags"):
        raise AdaptloopError(f"--to must be 'spans' or 'tags', not '{to}'")
    loaded = load_extraction(data)
    with output.open("w", encoding="utf-8") as f:
        for e in loaded.examples:
            if to == "spans":
                row = {"text": e.text, "spans": [{"start": s_, "end": t, "label": lab, "value": e.text[s_:t]}
                                                 for s_, t, lab in e.spans]}
            else:
                tokens, tags = spans_to_tags(e.text, e.spans)
                row = {"tokens": tokens, "tags": tags}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = {"written": len(loaded.examples), "output": str(output),
              "quarantined": [{"line": q.line_no, "reason": q.reason} for q in loaded.quarantined]}
    if as_json:
        _emit(report)
        return
    out.print(f"wrote {report['written']} records to {output}")
    for q in report["quarantined"]:
        err.print(f"[yellow]line {q['line']} not converted[/]: {escape(q['reason'])}")


@app.command()
def models(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """The registry: model versions, their aliases and the events that set them."""
    from adaptloop.store import registry

    ws = _open(workspace)
    vs, evs = registry.versions(ws.store), registry.events(ws.store)
    aliases: dict[str, int] = {}
    for e in evs:
        if e.alias:
            aliases[e.alias] = e.version_id
    report = {
        "aliases": {k: f"v{v}" for k, v in aliases.items()},
        "versions": [{"version": f"v{v.id}", "task_id": v.task_id, "node_id": v.node_id,
                      "artifact": v.artifact, "metrics": v.metrics, "lineage": v.lineage,
                      "aliases": [a for a, vid in aliases.items() if vid == v.id],
                      "created_at": v.created_at.isoformat()} for v in vs],
        "events": [{"version": f"v{e.version_id}", "event": e.event, "alias": e.alias,
                    "reason": e.reason, "at": e.created_at.isoformat()} for e in evs],
    }
    if as_json:
        _emit(report)
        return
    t = Table(title="model versions")
    for col in ("version", "aliases", "node", "eval", "dev", "created"):
        t.add_column(col)
    for v in report["versions"]:
        t.add_row(v["version"], ",".join(v["aliases"]) or "-", str(v["node_id"]),
                  _score(v["metrics"].get("eval")), _score(v["metrics"].get("dev")),
                  v["created_at"][:19])
    out.print(t)
    for e in report["events"]:
        out.print(f"  {e['at'][:19]} {e['version']} {e['event']}"
                  f"{' → ' + e['alias'] if e['alias'] else ''}: {e['reason']}")

traces_app = typer.Typer(cls=_Group, help="Production traces: import logs, summarise, list by triage verdict, "
                         "and the quarantine of malformed lines.", invoke_without_command=True,
                         no_args_is_help=False)
app.add_typer(traces_app, name="traces")


@traces_app.callback()
def traces(ctx: typer.Context, workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Summarise the stored traces: how many, with feedback, and by triage verdict."""
    if ctx.invoked_subcommand is not None:
        return
    report = _open(workspace).store.trace_summary()
    total, with_fb, kinds, quarantined = (report[k] for k in ("traces", "with_feedback", "poison_by_kind",
                                                                "quarantined_lines"))
    if as_json:
        _emit(report)
        return
    out.print(f"{total} traces, {with_fb} with feedback; {quarantined} malformed lines quarantined")
    for k, n in sorted(report["by_triage"].items(), key=lambda kv: -kv[1]):
        out.print(f"  {k:<13} {n}")
    if kinds:
        out.print("poisonous (kept, never trained on): " + ", ".join(f"{k} {n}" for k, n in kinds.items())
                  + "; list them with `adaptloop traces list --triage poison`")


@traces_app.command("audit")
def traces_audit(
    run: Annotated[int | None, typer.Option("--run", help="One run only [default: every run].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What got in: per run and set a model was trained, selected or gated on (train, dev, eval),
    how many traces went in and how many of them the triage doubted, and why.

    A trace is doubted when its verdict is not ``ok`` / ``fixable`` (a leak: should never happen)
    or when the training data gives its feedback label a probability below 0.5."""
    rows = _open(workspace).store.trace_audit(run)
    if as_json:
        _emit({"sets": rows})
        return
    if not rows:
        out.print("no trace has gone into a training, dev or eval set yet (`adaptloop improve` puts them there)")
        return
    t = Table(title="traces per set, and what the triage doubted")
    for col in ("run", "set", "traces", "doubted", "leaked poison", "why"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["run_id"]), r["set"], str(r["traces"]), str(r["doubted"]), str(r["leaked_poison"]),
                  escape("; ".join(f"{k}: {n}" for k, n in sorted(r["why"].items(), key=lambda kv: -kv[1]))))
    out.print(t)


@traces_app.command("import")
def traces_import(
    file: Annotated[Path, typer.Argument(help="JSONL traces (format: DESIGN.md).", show_default=False)],
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Import traces logged elsewhere: idempotent by id; malformed lines are quarantined with the reason."""
    from adaptloop.agent.improve import import_traces

    r = import_traces(_open(workspace), str(file))
    if as_json:
        _emit(r)
        return
    out.print(f"{r['read']} traces read: {r['new']} new, {r['already_stored']} already stored; "
              f"{r['quarantined']} malformed lines quarantined"
              + (" (see `adaptloop traces quarantine`)" if r["quarantined"] else ""))


@traces_app.command("list")
def traces_list(
    triage: Annotated[str | None, typer.Option(help="Only this verdict: ok, fixable, poison, out_of_scope, "
                                                    "unlabelled, unjudged.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Traces with their feedback and triage verdict (why, and how much the feedback is trusted)."""
    from sqlalchemy import select

    from adaptloop.store.db import TraceRow

    ws = _open(workspace)
    stmt = select(TraceRow).order_by(TraceRow.ts.desc()).limit(limit)
    if triage == "unjudged":
        stmt = stmt.where(TraceRow.triage.is_(None))
    elif triage:
        stmt = stmt.where(TraceRow.triage == triage)
    rows = [{"id": r.id, "ts": r.ts.isoformat(), "model_version": r.model_version, "input": r.input,
             "output": r.output, "feedback": {"label": r.feedback_label, "verdict": r.feedback_verdict,
                                              "source": r.feedback_source,
                                              **({"entities": r.feedback_spans} if r.feedback_spans is not None
                                                 else {})},
             "triage": r.triage, "kind": r.kind, "reason": r.reason, "trust": r.trust} for r in ws.store.all(stmt)]
    if as_json:
        _emit({"traces": rows})
        return
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


@traces_app.command("quarantine")
def traces_quarantine(limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
                      workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Malformed trace lines, each with its file, line number and the reason it was set aside."""
    from sqlalchemy import select

    from adaptloop.store.db import Quarantine

    ws = _open(workspace)
    rows = ws.store.all(select(Quarantine).where(Quarantine.source.like("traces:%"))
                        .order_by(Quarantine.id).limit(limit))
    report = [{"file": q.source.removeprefix("traces:"), "line": q.line_no, "reason": q.reason, "raw": q.raw}
              for q in rows]
    if as_json:
        _emit({"quarantined": report})
        return
    if not report:
        out.print("no quarantined trace lines")
    for q in report:
        out.print(f"{escape(q['file'])}:{q['line']}: {escape(q['reason'])}")


@app.command()
def improve(
    traces_file: Annotated[Path | None, typer.Option(
        "--traces", help="Import this JSONL trace file first (idempotent by id).")] = None,
    budget: Annotated[str | None, typer.Option(help="Wall budget of the cycle [default: [improve] budget].")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: start a cycle whenever enough new "
                                                         "failures ([improve] min_failures) have feedback.")] = False,
    interval: Annotated[float, typer.Option(help="--watch: seconds between checks.")] = 30.0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One production cycle: judge and triage new traces → failure taxonomy → curriculum → retrain →
    regression gate → promote, or refuse with the broken examples listed.

    Poisonous traces (injections, contradictory premises, feedback bursts, labels that contradict the
    training data or a frozen eval example) are kept and shown, never trained on.
    """
    from adaptloop.agent.budget import parse_budget
    from adaptloop.agent.improve import ImproveCycle, import_traces, new_failures

    ws = _open(workspace)
    seconds = parse_budget(budget or ws.settings.improve.budget)
    if traces_file is not None:
        r = import_traces(ws, str(traces_file))
        err.print(f"imported {r['new']} new traces ({r['already_stored']} already stored, "
                  f"{r['quarantined']} quarantined)")
    while True:
        if watch:
            import time as _time

            n = new_failures(ws)
            if n < ws.settings.improve.min_failures:
                err.print(f"{n} new failures with feedback; waiting for {ws.settings.improve.min_failures}")
                _time.sleep(interval)
                continue
        with _progress() as progress:
            result = ImproveCycle(ws, seconds, progress=progress).run().to_dict()
        if as_json:
            _emit(result)
        else:
            _show_improve(result)
        if not watch:
            return


def _show_improve(r: dict[str, Any]) -> None:
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
        for s in r["gate"]["sets"]:
            out.print(f"[bold]gate[/] {s['eval_set']} (n={s['n']}): {s['incumbent']:.4f} → {s['candidate']:.4f} "
                      f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}], {len(s['broken'])} broken, {s['fixed']} fixed")
            for b in s["broken"][:5]:
                out.print(f"      broke: {escape(b['text'][:70])!r} ({b['label']}: {b['was']} → {b['now']})")
        if p := r["gate"].get("pooled"):
            out.print(f"[bold]gate[/] {p['eval_set']} (n={p['n']}): {p['incumbent']:.4f} → {p['candidate']:.4f} "
                      f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] (noise rule only)")
    for s in r.get("checkpoint", []):
        out.print(f"[bold]new checkpoint[/] {s['eval_set']} (n={s['n']}, binding from the next cycle): "
                  f"{s['incumbent']:.4f} → {s['candidate']:.4f}, {s['broken']} broken, {s['fixed']} fixed")
    for a in r.get("audit", []):
        why = "; ".join(f"{k}: {n}" for k, n in sorted(a["why"].items(), key=lambda kv: -kv[1]))
        out.print(f"[bold]audit[/] {a['set']}: {a['traces']} traces, {a['doubted']} doubted by triage"
                  + (f" ({escape(why)})" if why else "") + " — `adaptloop traces audit`")
    colour = {"promoted": "green", "refused": "yellow"}.get(r["decision"], "white")
    out.print(f"[bold {colour}]{r['decision']}[/] {escape(r['reason'])}  ({r['wall_seconds']:.0f}s)")


@app.command()
def rollback(
    reason: Annotated[str | None, typer.Option(help="Why (kept with the registry event).")] = None,
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Point `production` back at the version before the current one (a new registry event)."""
    from adaptloop.store import registry

    r = registry.rollback(_open(workspace).store, reason=reason or "", who=f"{getpass.getuser()} (cli)")
    if as_json:
        _emit(r)
        return
    out.print(f"production: {r['from']} → {r['to']} (rolled back; a running `adaptloop serve` switches within "
              "a second)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: [serve] host].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: [serve] port].")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the production model over HTTP: POST /v1/predict, /v1/feedback; GET /healthz, /metrics.

    Every prediction is traced in the store (batched, off the request path). The server switches to a
    newly promoted model without dropping a request. Promote/rollback over HTTP (/v1/admin/...) need
    `Authorization: Bearer <[serve] admin_token>` from adaptloop.toml.
    """
    import uvicorn

    from adaptloop.serve.app import create_app
    from adaptloop.store import registry

    ws = _open(workspace)
    registry.resolve(ws.store, "production")  # a clear error before the server starts
    cfg = ws.settings.serve
    err.print(f"serving production from {ws.root} on http://{host or cfg.host}:{port or cfg.port} "
              "(Ctrl-C stops; queued traces are written first)")
    uvicorn.run(create_app(ws), host=host or cfg.host, port=port or cfg.port, log_level="warning")


bench_app = typer.Typer(cls=_Group, help="Benchmarks: AdaptFT-Bench (noisy production logs that punish naive "
                        "retraining).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
adaptft_app = typer.Typer(cls=_Group, invoke_without_command=True, no_args_is_help=False,
                          help="AdaptFT-Bench: per scenario, a base model on a small seed set, then 3 stages of "
                               "synthetic logs (poison 15% → 25% → 40%) played by the agent (improve), naive "
                               "retraining (on all feedback so far, and on the latest stage's only) and a clean "
                               "oracle.")
bench_app.add_typer(adaptft_app, name="adaptft")
ScenariosOpt = Annotated[list[str] | None, typer.Option(
    "--scenarios", "-s", help="Scenario names (repeat the option) [default: all]: banking77, clinc150, snips, "
                              "wnut17, presidio_pii, banking77-mpnet, snips-mpnet.", show_default=False)]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Small stages and budgets (a smoke run).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the seed sets, the logs and the test samples.")]
DatasetsOpt = Annotated[Path | None, typer.Option(
    "--datasets", help="Folder of the public datasets [default: $ADAPTLOOP_DATASETS, else "
                       "../shared/datasets beside the checkout].", show_default=False)]


@adaptft_app.callback()
def adaptft(
    ctx: typer.Context,
    scenarios: ScenariosOpt = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json, table.md, plot.html and "
                                                        "each scenario's logs and workspace. Scenarios an "
                                                        "earlier run wrote here with the same seed and sizes, "
                                                        "and not run this time, stay in the table.")]
    = Path("adaptft-results"),
    datasets: DatasetsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the bench and print its table; `adaptloop bench adaptft generate` writes the logs alone."""
    if ctx.invoked_subcommand is not None:
        return
    from adaptloop.bench.adaptft import SCENARIOS, run

    with _progress() as progress:
        doc = run(scenarios or list(SCENARIOS), quick=quick, seed=seed, out=out_dir, datasets=datasets,
                  progress=progress, log=lambda m: err.print(m, highlight=False))
    if as_json:
        _emit(doc)
        return
    sys.stdout.write((out_dir / "table.md").read_text(encoding="utf-8"))
    err.print(f"results: {out_dir / 'results.json'}, {out_dir / 'table.md'}, {out_dir / 'plot.html'}")


@adaptft_app.command("generate")
def adaptft_generate(
    scenarios: ScenariosOpt = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder: one sub-folder of files per scenario.")]
    = Path("adaptft-logs"),
    datasets: DatasetsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write each scenario's seed set, test sample and stage logs (traces for `adaptloop traces import`),
    with answer files (the ground truth: poison or fixable, and the kind), without training anything."""
    from adaptloop.bench.adaptft import FULL, QUICK, SCENARIOS, default_datasets, generate, write_generated

    names = scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise AdaptloopError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    written = {}
    for name in names:
        g = generate(SCENARIOS[name], datasets=datasets or default_datasets(), sizes=QUICK if quick else FULL,
                     seed=seed)
        written[name] = write_generated(g, out_dir / name)
    if as_json:
        _emit({"written": written})
        return
    for name, files in written.items():
        out.print(f"{name}: " + ", ".join(Path(f).name for f in files.values()) + f" in {out_dir / name}")


def main() -> None:
    """Entry point (``adaptloop``)."""
    app()


if __name__ == "__main__":
    main()
