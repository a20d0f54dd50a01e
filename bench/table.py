"""The benchmarks' printed tables: columns padded to their widest cell, a rule under the header.

``aligned(rows, left=...)`` lays out rows of cells (the first row is the header) as lines of
text: the columns named in ``left`` are aligned left, the others right (numbers), two spaces
apart, with no trailing white space.
"""

from __future__ import annotations

from collections.abc import Container, Sequence


def aligned(rows: Sequence[Sequence[str]], left: Container[int] = (0,)) -> list[str]:
    """``rows`` as padded lines, a line of dashes after the first."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return lines
