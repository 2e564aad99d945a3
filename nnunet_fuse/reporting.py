"""Result tables shared by the demo, the profiler, reproduce, classify and the benchmarks, and the one convention
for a spread over folds: the sample standard deviation (n − 1)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

SPREAD_NOTE = "sd: sample standard deviation over the folds (n − 1)"


def mean_and_sd(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n − 1) of values; sd None for a single value."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def format_table(rows: List[List[str]]) -> str:
    """A Markdown table (also readable on a terminal); rows[0] is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
