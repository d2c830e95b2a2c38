"""Event sanitisation: injection-safe, bounded, secrets never recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soc2kit.audit.events import (
    REDACTED,
    AuditEvent,
    canonical_json,
    format_time,
    sanitize_text,
    sanitize_value,
)

DANGEROUS = ["\r", "\n", "\x1b", "\x00", "\u202e", "\u2066", "\u200f", "\x85", "\u2028", "\x7f"]


@pytest.mark.parametrize("char", DANGEROUS)
def test_control_characters_are_escaped(char: str) -> None:
    out = sanitize_text(f"user{char}admin", 100)
    assert char not in out
    assert out.startswith("user\\") and out.endswith("admin")


@given(st.text(max_size=300))
def test_sanitized_text_never_contains_controls_and_is_bounded(value: str) -> None:
    out = sanitize_text(value, 120)
    assert len(out) <= 120
    assert not any(c in out for c in DANGEROUS)
    assert all(ord(c) >= 0x20 for c in out)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100))
def test_printable_ascii_is_kept_verbatim(value: str) -> None:
    assert sanitize_text(value, 200) == value


def test_long_values_are_truncated_with_a_hash_of_the_whole() -> None:
    a = sanitize_text("x" * 5000 + "a", 200)
    b = sanitize_text("x" * 5000 + "b", 200)
    assert len(a) <= 200 and "truncated sha256:" in a
    assert a != b  # the hash tells two long values apart


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "cookie",
        "Set-Cookie",
        "access_token",
        "refresh-token",
        "password",
        "new_passwd",
        "api_key",
        "X-API-Key",
        "client_secret",
        "session_id",
        "private_key",
    ],
)
def test_secret_keys_are_redacted_at_any_depth(key: str) -> None:
    value = {"outer": {key: "hunter2-very-secret", "ok": 1}, key: ["hunter2"]}
    out = sanitize_value(value, 100)
    assert "hunter2" not in json.dumps(out)
    assert out["outer"][key] == REDACTED and out["outer"]["ok"] == 1


def test_bytes_are_never_recorded_raw() -> None:
    assert sanitize_value(b"\x00secret", 100) == "[7 bytes]"


def test_depth_and_size_are_capped() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(20):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    assert "[too deep]" in json.dumps(sanitize_value(deep, 100))
    many = sanitize_value(list(range(1000)), 100)
    assert len(many) == 101


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_time(datetime(2026, 1, 1))


def test_canonical_json_is_stable() -> None:
    event = AuditEvent(
        event_id="e",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        event_type="t",
        action="a",
        outcome="success",
        service="s",
        environment="test",
    )
    text = canonical_json(event.to_dict())
    assert text == canonical_json(json.loads(text))
    assert '"occurred_at":"2026-01-02T03:04:05.000006Z"' in text
    assert ", " not in text and ": " not in text
