"""A version's lineage drawn as a graph (SVG): datasets, versions and transfers in columns by
generation, arrows labelled with how one went into the other."""

from __future__ import annotations

import textwrap
import uuid
from collections import defaultdict

from app.schemas.models import LineageRead
from app.web.figures import new_figure, svg_bytes

_COLOURS = {"dataset": "#e9eef4", "version": "#e3f1e6", "transfer": "#fdf0dc"}


def _levels(lineage: LineageRead) -> dict[uuid.UUID, int]:
    """Column of each node: the longest path from a node with no inputs."""
    inputs: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for edge in lineage.edges:
        inputs[edge.target].append(edge.source)
    level: dict[uuid.UUID, int] = {}

    def depth(node: uuid.UUID, seen: frozenset[uuid.UUID]) -> int:
        if node in level:
            return level[node]
        parents = [p for p in inputs.get(node, []) if p not in seen]
        level[node] = 0 if not parents else 1 + max(depth(p, seen | {node}) for p in parents)
        return level[node]

    for node in lineage.nodes:
        depth(node.id, frozenset())
    # An input with no inputs of its own (a dataset) stands just before what it went into.
    children: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for edge in lineage.edges:
        children[edge.source].append(edge.target)
    for node in lineage.nodes:
        if not inputs.get(node.id) and children.get(node.id):
            level[node.id] = max(0, min(level[c] for c in children[node.id]) - 1)
    return level


def _label(text: str, width: int = 24) -> str:
    lines = textwrap.wrap(text, width)[:2]
    if len(textwrap.wrap(text, width)) > 2:
        lines[-1] = lines[-1][: width - 1] + "…"
    return "\n".join(lines)


def lineage_svg(lineage: LineageRead) -> bytes:
    level = _levels(lineage)
    columns: dict[int, list[uuid.UUID]] = defaultdict(list)
    order = {"version": 0, "transfer": 1, "dataset": 2}
    for node in sorted(lineage.nodes, key=lambda n: order[n.kind]):
        columns[level[node.id]].append(node.id)
    n_cols = max(columns) + 1 if columns else 1
    n_rows = max((len(c) for c in columns.values()), default=1)
    width, height = max(6.4, 2.8 * n_cols), max(2.4, 1.1 * n_rows + 0.6)
    from matplotlib import patches

    fig = new_figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, n_cols)
    ax.set_ylim(0, n_rows)
    ax.set_axis_off()
    where: dict[uuid.UUID, tuple[float, float]] = {}
    for col, ids in columns.items():
        for row, node_id in enumerate(ids):
            where[node_id] = (col + 0.5, n_rows - (row + 0.5) * n_rows / len(ids))
    by_id = {n.id: n for n in lineage.nodes}
    for edge in lineage.edges:
        (x0, y0), (x1, y1) = where[edge.source], where[edge.target]
        ax.annotate(
            "",
            xy=(x1 - 0.42, y1),
            xytext=(x0 + 0.42, y0),
            arrowprops={"arrowstyle": "->", "color": "#5a6570", "lw": 1},
        )
        ax.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2 + 0.08,
            edge.relation.replace("_", " "),
            ha="center",
            fontsize=7,
            color="#5a6570",
        )
    for node_id, (x, y) in where.items():
        node = by_id[node_id]
        me = node_id == lineage.version.id
        ax.add_patch(
            patches.FancyBboxPatch(
                (x - 0.42, y - 0.3),
                0.84,
                0.6,
                boxstyle="round,pad=0.02",
                facecolor=_COLOURS[node.kind],
                edgecolor="#1f4e8c" if me else "#8a96a3",
                lw=2.2 if me else 1,
            )
        )
        detail = node.status or (node.sha256[:12] + "…" if node.sha256 else "")
        ax.text(
            x,
            y + 0.07,
            _label(node.label),
            ha="center",
            va="center",
            fontsize=7.5,
            weight="bold" if me else "normal",
        )
        ax.text(x, y - 0.2, detail, ha="center", va="center", fontsize=7, color="#5a6570")
    return svg_bytes(fig)
