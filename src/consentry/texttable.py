"""Plain aligned columns for the CLI's lists (events, datasets).

Not a Rich table on purpose: a Rich table fits the terminal by wrapping or cutting cells, and
an id cut short cannot be told from its neighbours or copied. Here every cell is whole; a line
wider than the terminal wraps as a whole line.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def aligned(rows: Sequence[Sequence[str]], *, right: Collection[int] = ()) -> list[str]:
    """The rows (the first is the header) as lines of columns two spaces apart; columns in
    ``right`` are right-aligned (numbers), the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell if i == len(row) - 1 else cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
