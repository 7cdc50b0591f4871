"""One search run as a rich tree for the terminal (``adaptloop runs --graph``) and as plain text for logs.

Every line is built from :class:`rich.text.Text` pieces, never console markup, so names and hypotheses
containing ``[brackets]`` print as they are.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from io import StringIO
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from adaptloop.report.nodes import forest, node_label, node_score, short_encoder

__all__ = ["DROPPED_MARK", "WINNER_MARK", "render_tree", "tree_text"]

WINNER_MARK = "★"
DROPPED_MARK = "↩ dropped"  # the view's `dropped`: scored below its parent, rolled back
STATUS_STYLES = {"done": "dim", "failed": "bold red", "interrupted": "yellow", "running": "cyan"}


def _run_line(view: Mapping[str, Any]) -> Text:
    run = view.get("run") or {}
    line = Text.assemble((f"run #{run.get('id', '?')}", "bold"), " ", (str(run.get("task") or "search"), "bold cyan"),
                         f" · {run.get('status', 'unknown')} · {run.get('primary_metric') or 'accuracy'}")
    spent, budget = run.get("spent_s"), run.get("budget_s")
    if isinstance(spent, (int, float)) and isinstance(budget, (int, float)):
        line.append(f" · {spent:.0f}/{budget:.0f} s")
    if run.get("stop_reason"):
        line.append(f" · stop: {run['stop_reason']}", style="dim")
    return line


def _node_line(node: Mapping[str, Any], metric: str, parent_score: float | None) -> Text:
    line = Text()
    if node.get("winner"):
        line.append(f"{WINNER_MARK} ", style="bold yellow")
    line.append(node_label(node), style="bold yellow" if node.get("winner") else "bold")
    if node.get("intervention"):
        line.append(f" ← {node['intervention']}", style="magenta")
    pipe = node.get("pipeline") or {}
    parts = [str(p) for p in (pipe.get("strategy"), pipe.get("recipe"), short_encoder(pipe.get("encoder"))) if p]
    if parts:
        line.append(f"  {'/'.join(parts)}", style="blue")
    score = node_score(node, metric)
    if score is not None:
        line.append(f"  dev {score:.3f}")
        if parent_score is not None:
            delta = score - parent_score
            line.append(f" ({delta:+.3f})", style="green" if delta > 0 else "red" if delta < 0 else "dim")
    status = str(node.get("status") or "unknown")
    line.append(f"  {status}", style=STATUS_STYLES.get(status, ""))
    if node.get("dropped"):
        line.append(f"  {DROPPED_MARK}", style="red")
    return line


def render_tree(view: Mapping[str, Any]) -> Tree:
    """The run as a :class:`rich.tree.Tree`: the run line at the root, each experiment under its parent.

    Each node shows its name, intervention, strategy/recipe/encoder, dev score with the change against its
    parent (green gain, red drop), status, ``★`` for the winner and ``↩ dropped`` for rolled-back nodes.
    """
    metric = str((view.get("run") or {}).get("primary_metric") or "accuracy")
    nodes = [n for n in (view.get("nodes") or []) if isinstance(n, Mapping)]
    by_id = {n.get("id"): n for n in nodes}
    roots, children = forest(nodes)
    tree = Tree(_run_line(view), guide_style="dim")
    if not nodes:
        tree.add(Text("no experiments recorded", style="dim italic"))
        return tree
    stack: list[tuple[Hashable, Tree, float | None]] = [(r, tree, None) for r in reversed(roots)]
    while stack:  # iterative: a long chain of refinements must not hit the recursion limit
        i, parent_branch, parent_score = stack.pop()
        node = by_id[i]
        branch = parent_branch.add(_node_line(node, metric, parent_score))
        stack.extend((k, branch, node_score(node, metric)) for k in reversed(children.get(i, [])))
    return tree


def tree_text(view: Mapping[str, Any], width: int = 120) -> str:
    """:func:`render_tree` as plain text (no colour, no escape codes), ``width`` columns wide."""
    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=True, color_system=None, force_terminal=False,
                      highlight=False, emoji=False)
    console.print(render_tree(view))
    return buffer.getvalue()
