"""The benchmark table as files: ``benchmark.json``, ``benchmark.md`` and ``benchmark.png``.

Every file is written atomically, so an interrupted run leaves the previous table or none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloqat.core.atomic import atomic_path, write_json, write_text

#: (column title, row key, format) of the Markdown and terminal tables.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("format", "format", "{}"),
    ("precision", "precision", "{}"),
    ("runtime", "runtime", "{}"),
    ("status", "status", "{}"),
    ("size MB", "size_mb", "{:.2f}"),
    ("AP", "AP", "{:.4f}"),
    ("AP50", "AP50", "{:.4f}"),
    ("ms/img", "latency_ms", "{:.2f}"),
    ("img/s", "images_per_s", "{:.2f}"),
    ("vs MindSpore fp32", "speedup_vs_mindspore_fp32", "{:.2f}x"),
)


NOTE = (
    "MindSpore int8 is the fake-quant network (int8 arithmetic simulated in float kernels); "
    "ONNX int8 is the QDQ model with int8 weights. The last column is the MindSpore fp32 "
    "row's ms/img over the row's."
)


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """One table cell: the formatted value, or ``-`` where there is none."""
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def title(result: dict[str, Any]) -> str:
    """The table's caption: input size, batch, threads, images and the load average."""
    images = f"{result['images']} val images" if result["images"] else "no accuracy (no data)"
    threads = result["threads"] if result["threads"] is not None else "default"
    return (
        f"{result['testing_shape']} px, batch {result['batch']}, {threads} threads, {images}, "
        f"median of {result['runs']} alternating rounds, load average {result['load_avg_1m']}"
    )


def markdown(result: dict[str, Any]) -> str:
    """The table in GitHub Markdown, with the failed rows' reasons below it."""
    lines = [f"**yoloqat benchmark**: {title(result)}", ""]
    lines.append("| " + " | ".join(c[0] for c in COLUMNS) + " |")
    lines.append("|" + "|".join("---" if i < 4 else "---:" for i in range(len(COLUMNS))) + "|")
    for row in result["rows"]:
        lines.append("| " + " | ".join(cell(row, k, f) for _, k, f in COLUMNS) + " |")
    lines += ["", NOTE]
    failed = [r for r in result["rows"] if r["error"]]
    if failed:
        lines.append("")
        for r in failed:
            lines.append(f"- {r['format']} {r['precision']} ({r['runtime']}): {r['error']}")
    return "\n".join(lines) + "\n"


#: Latencies spanning more than this factor are drawn on a log axis.
LOG_SPAN = 10.0


def latency_axis(ax: Any, latencies: list[float]) -> None:
    """The x axis of latencies: a log scale with plain-number ticks at 1, 2 and 5 per
    decade when they span more than :data:`LOG_SPAN`, else a linear one (a log axis over a
    narrow range labels its minor ticks ``3x10^0 4x10^0 ...``, which overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = min(latencies), max(latencies)
    if low > 0 and high / low > LOG_SPAN:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("latency (ms/img, log scale, lower is better)")
    else:
        ax.set_xlabel("latency (ms/img, lower is better)")


def figure(result: dict[str, Any]) -> Any:
    """The matplotlib figure of :func:`plot` (None if no row ran)."""
    rows = [r for r in result["rows"] if r["latency_ms"]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    labels = [f"{r['format']} {r['precision']}\n({r['runtime']})" for r in rows]
    if all(r["AP50"] is not None for r in rows):
        # a legend, not annotations: rows of one model have the same AP50 and would overlap
        for r, label in zip(rows, labels):
            marker = "o" if r["precision"] == "fp32" else "s"
            ax.scatter(
                r["latency_ms"],
                r["AP50"],
                s=70,
                marker=marker,
                alpha=0.8,
                label=label.replace("\n", " "),
            )
        latency_axis(ax, [float(r["latency_ms"]) for r in rows])
        formatter = ax.yaxis.get_major_formatter()
        if isinstance(formatter, ScalarFormatter):  # the default: AP50 as it is, no "+0.9"
            formatter.set_useOffset(False)
        ax.set_ylabel("AP50")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    else:
        ax.barh(labels, [r["latency_ms"] for r in rows], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel("latency (ms/img, lower is better)")
        ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title(result), fontsize=7)
    fig.tight_layout()
    return fig


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Latency vs AP50 per row (or latency bars when there is no accuracy); None if no row ran."""
    fig = figure(result)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """Write the three files; return their paths by kind (``png`` missing when nothing ran)."""
    out = Path(output_dir)
    files = {
        "json": write_json(out / "benchmark.json", result),
        "markdown": write_text(out / "benchmark.md", markdown(result)),
    }
    png = plot(result, out / "benchmark.png")
    if png is not None:
        files["png"] = png
    return files
