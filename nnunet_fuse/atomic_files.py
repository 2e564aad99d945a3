"""Files written whole or not at all: each is written under a temporary name in its folder and renamed into place.

An interruption (Ctrl-C, a killed process, a full disk) leaves either the old file or the new one, never a partial
one; the temporary file is removed when the writing fails.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

PathLike = Union[str, Path]


@contextmanager
def replaced_atomically(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same file ending, so format-guessing writers work); when the block
    ends without error and the temporary file exists, it replaces ``path``. A writer that wrote nothing (nnU-Net's
    trainer with checkpointing disabled) leaves ``path`` as it was."""
    path = Path(path)
    temporary = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield temporary
        if temporary.exists():
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: PathLike, text: str) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_text(text)


def write_csv_atomically(path: PathLike, rows: Iterable[Sequence]) -> None:
    """rows (the first the header) as a CSV file, written whole."""
    import csv
    import io

    table = io.StringIO(newline="")
    csv.writer(table).writerows(rows)
    write_text_atomically(path, table.getvalue())
