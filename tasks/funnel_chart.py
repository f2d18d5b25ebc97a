"""The funnel report's chart: each month's leads entering each stage as a share of the monthly target, a PNG drawn
offscreen (matplotlib's Agg canvas, no display and no pyplot state), small enough to embed in an artifact."""

from __future__ import annotations

import io
from datetime import datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from domain.funnel import FUNNEL_STAGES, STAGE_NAMES, FunnelReport

_TARGET_COLOUR = "#c0392b"


def month_name(month: str) -> str:
    """'2026-01' as 'Jan 2026'."""
    return datetime.strptime(month, "%Y-%m").strftime("%b %Y")


def funnel_chart(report: FunnelReport) -> bytes:
    """Grouped bars, a group per stage and a bar per month, each the month's count over the stage's target (the
    line at 100%); the counts written on the bars (up to eight months), the targets under the stages' names."""
    targets = report.targets.per_month
    months = report.months
    figure = Figure(figsize=(9, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(len(months), 1)
    colours = _month_colours(len(months))
    highest = 1.0
    for index, row in enumerate(months):
        shares = [row.entered[s] / targets[s] for s in FUNNEL_STAGES]
        highest = max(highest, *shares)
        offsets = [stage + (index - (len(months) - 1) / 2) * width for stage in range(len(FUNNEL_STAGES))]
        label = month_name(row.month) + (" (to date)" if row.partial else "")
        bars = axes.bar(offsets, shares, width * 0.92, color=colours[index], label=label,
                        hatch="//" if row.partial else None, edgecolor="white" if not row.partial else "#555555",
                        linewidth=0.5)
        if len(months) <= 8:  # the counts stay legible up to eight bars a stage
            axes.bar_label(bars, labels=[f"{row.entered[s]:,}" for s in FUNNEL_STAGES], padding=2,
                           fontsize=8 if len(months) <= 4 else 7)
    axes.axhline(1.0, color=_TARGET_COLOUR, linestyle="--", linewidth=1.2, label="monthly target")
    axes.set_xticks(range(len(FUNNEL_STAGES)),
                    [f"{_raised(STAGE_NAMES[s])}\ntarget {targets[s]:,}" for s in FUNNEL_STAGES])
    axes.set_ylim(0, highest * 1.18)
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_ylabel("entering the stage, share of the monthly target")
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    # Above the bars, in rows of up to seven, so that it never hides one
    legend = axes.legend(loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, frameon=False,
                         ncols=min(len(months) + 1, 7))
    legend.set_in_layout(False)
    figure.suptitle(f"Funnel against targets, {report.period.label()}", fontsize=12, x=0.01, ha="left")
    counted = "; the number on a bar is the count" if len(months) <= 8 else ""
    figure.text(0.01, 0.01, f"As at {report.now:%Y-%m-%d %H:%M} UTC. Leads entering each stage in the month{counted}.",
                fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 0.91 if len(months) < 7 else 0.86))
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _raised(name: str) -> str:
    return name[0].upper() + name[1:]


def _month_colours(n: int) -> list:
    """`n` colours in the order of time, each month's easy to tell from the next (viridis, dark to light)."""
    from matplotlib import colormaps

    ramp = colormaps["viridis"]
    return [ramp(0.1 + 0.75 * (i / max(n - 1, 1))) for i in range(n)]
