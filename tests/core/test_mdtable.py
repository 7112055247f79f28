"""md_table: the one markdown-table writer keeps every value in its own cell."""

from __future__ import annotations

import pytest

from codeio_dagster.mdtable import md_table


def test_cells_that_would_break_a_row_stay_in_their_cell():
    text = md_table(["stage", "detail"], [["refactor", "a | b\nnext line"], ["io_pairs", None]])
    assert text.splitlines() == [
        "| stage | detail |",
        "|---|---|",
        "| refactor | a \\| b ⏎ next line |",
        "| io_pairs |  |",
    ]


def test_a_row_of_the_wrong_width_is_refused_naming_it():
    with pytest.raises(ValueError, match="table row has 1 cells, the header 2"):
        md_table(["a", "b"], [["only one"]])
