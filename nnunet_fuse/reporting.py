"""Result tables shared by the demo, the profiler, reproduce and the benchmarks."""
from __future__ import annotations

from typing import List


def format_table(rows: List[List[str]]) -> str:
    """A Markdown table (also readable on a terminal); rows[0] is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
