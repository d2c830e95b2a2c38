"""csv_cell: the one neutraliser for every CSV soc2kit hands an auditor (export, evidence)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from soc2kit.audit.export import csv_cell


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_leads_are_neutralised(lead: str) -> None:
    assert csv_cell(f"{lead}HYPERLINK(1)") == f"'{lead}HYPERLINK(1)"


def test_other_values() -> None:
    assert csv_cell(None) == ""
    assert csv_cell("plain = text") == "plain = text"
    assert csv_cell(42) == "42"
    assert csv_cell(datetime(2026, 11, 26, tzinfo=UTC)) == "2026-11-26T00:00:00+00:00"
    assert csv_cell({"b": ["=x"], "a": 1}) == '{"a":1,"b":["=x"]}'
