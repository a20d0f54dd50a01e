"""Unit tests of broker.sse: frame formatting, Last-Event-ID parsing, argument checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sse_support import parse_block
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from broker import RunBroker
from broker.sse import (
    KEEPALIVE,
    InvalidLastEventId,
    SSEResponse,
    format_event,
    format_retry,
    parse_last_event_id,
    sse_response,
)


def request(headers: list[tuple[str, str]] | None = None, query: str = "") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/events",
            "query_string": query.encode("latin-1"),
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers or []],
        }
    )


def test_regular_event_has_id_event_and_one_json_data_line() -> None:
    frame = format_event({"type": "token", "text": "hi", "id": 7})
    assert frame == b'id: 7\nevent: token\ndata: {"type":"token","text":"hi","id":7}\n\n'


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ({"type": "done"}, b'event: done\ndata: {"type":"done"}\n\n'),
        (
            {"type": "overflow", "limit": 3},
            b'event: overflow\ndata: {"type":"overflow","limit":3}\n\n',
        ),
        (
            {"type": "gap", "last_event_id": 2, "first_available_id": 9},
            b'event: gap\ndata: {"type":"gap","last_event_id":2,"first_available_id":9}\n\n',
        ),
    ],
)
def test_markers_have_no_id(marker: dict[str, Any], expected: bytes) -> None:
    assert format_event(marker) == expected


def test_payload_line_breaks_and_non_ascii_stay_on_one_ascii_line() -> None:
    event = {"type": "token", "text": "a\nb\r\nc\rd\u2028e\u0085f\x00 é 日本 \ud800", "id": 1}
    block = format_event(event).decode("ascii").removesuffix("\n\n")
    assert block.count("\n") == 2 and "\r" not in block
    assert parse_block(block).json() == event


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "", "a\udc80", 5, None])
def test_type_that_is_not_a_one_line_string_gets_no_event_field(name: object) -> None:
    frame = parse_block(format_event({"type": name, "id": 1}).decode().removesuffix("\n\n"))
    assert [key for key, _ in frame.fields] == ["id", "data"]


def test_id_must_be_an_int_to_become_an_id_field() -> None:
    for event_id in (True, "3", 1.5, None):
        assert not format_event({"type": "x", "id": event_id}).startswith(b"id:")


def test_values_json_cannot_encode_are_sent_as_str() -> None:
    frame = format_event({"type": "x", "obj": object, "id": 1})
    assert b'"obj":"<class \'object\'>"' in frame


def test_retry_and_keepalive_frames() -> None:
    assert format_retry(2500) == b"retry: 2500\n\n"
    assert KEEPALIVE == b": keep-alive\n\n"
    assert parse_block(KEEPALIVE.decode().removesuffix("\n\n")).fields == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(), json_values, max_size=5),
    st.text(),
    st.integers(min_value=1, max_value=2**62),
)
def test_any_event_round_trips_through_one_frame(
    payload: dict[str, Any], name: str, event_id: int
) -> None:
    event = {**payload, "type": name, "id": event_id}
    frame = format_event(event).decode("utf-8")
    assert frame.endswith("\n\n") and "\n\n" not in frame[:-2] and "\r" not in frame
    parsed = parse_block(frame[:-2])
    assert parsed.id == event_id
    writable = name and not any(c in "\r\n" or "\ud800" <= c <= "\udfff" for c in name)
    assert parsed.event == (name if writable else None)
    assert parsed.json() == event


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([], "", None),
        ([("Last-Event-ID", "0")], "", 0),
        ([("Last-Event-ID", "42")], "", 42),
        ([("Last-Event-ID", "007")], "", 7),
        ([("Last-Event-ID", "9" * 18)], "", 10**18 - 1),
        ([], "last_event_id=5", 5),
        ([("Last-Event-ID", "8")], "last_event_id=5", 8),
        ([("Last-Event-ID", "8")], "last_event_id=nonsense", 8),
        ([], "other=1", None),
    ],
)
def test_last_event_id_accepted(
    headers: list[tuple[str, str]], query: str, expected: int | None
) -> None:
    assert parse_last_event_id(request(headers, query)) == expected


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        ([("Last-Event-ID", "")], "", "Last-Event-ID header must be a non-negative decimal"),
        ([("Last-Event-ID", "-1")], "", "got '-1'"),
        ([("Last-Event-ID", " 1")], "", "got ' 1'"),
        ([("Last-Event-ID", "1_000")], "", "got '1_000'"),
        ([("Last-Event-ID", "1" * 19)], "", "at most 18 digits"),
        ([("Last-Event-ID", "x" * 100)], "", "got '" + "x" * 40 + "...'"),
        ([("Last-Event-ID", "1"), ("Last-Event-ID", "1")], "", "header given 2 times"),
        ([], "last_event_id=%D9%A3", "got '\u0663'"),
        ([], "last_event_id", "last_event_id query parameter must be"),
        ([], "last_event_id=1&last_event_id=1", "parameter given 2 times"),
    ],
)
def test_last_event_id_rejected(headers: list[tuple[str, str]], query: str, message: str) -> None:
    with pytest.raises(InvalidLastEventId) as caught:
        parse_last_event_id(request(headers, query))
    assert message in str(caught.value)
    response = sse_response(request(headers, query), RunBroker(), "run")
    assert isinstance(response, PlainTextResponse)
    assert response.status_code == 400
    assert response.body == str(caught.value).encode()


def test_sse_response_passes_the_resume_point_on() -> None:
    response = sse_response(request([("Last-Event-ID", "12")]), RunBroker(), "run", retry_ms=10)
    assert isinstance(response, SSEResponse)
    assert (response.last_event_id, response.retry_ms) == (12, 10)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-length" not in response.headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"last_event_id": -1}, "last_event_id must be >= 0"),
        ({"keepalive_interval": 0}, "keepalive_interval must be > 0"),
        ({"keepalive_interval": float("nan")}, "keepalive_interval must be > 0"),
        ({"retry_ms": -1}, "retry_ms must be >= 0"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SSEResponse(RunBroker(), "run", **options)


def test_json_is_compact_and_keeps_key_order() -> None:
    data = parse_block(format_event({"b": 1, "a": [1, 2], "id": 3}).decode()[:-2]).get("data")
    assert data == json.dumps({"b": 1, "a": [1, 2], "id": 3}, separators=(",", ":"))


def strict_json(data: str) -> Any:
    """Parse as a browser's ``JSON.parse`` would: NaN and Infinity are not JSON."""

    def reject(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=reject)


def data_of(event: dict[Any, Any]) -> Any:
    frame = format_event(event).decode("ascii")
    assert frame.endswith("\n\n") and "\n\n" not in frame[:-2]
    return strict_json(parse_block(frame[:-2]).get("data") or "")


def test_values_strict_json_cannot_hold_become_strings() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    event = {
        "type": "score",
        "nan": float("nan"),
        "inf": [float("inf"), -float("inf"), 1.5],
        "huge": 10**5000,
        "keys": {(1, 2): "tuple", None: "none", True: "bool", 2.5: "float", float("nan"): "nan"},
        "cycle": cycle,
        "obj": object,
        "id": 4,
    }
    assert data_of(event) == {
        "type": "score",
        "nan": "nan",
        "inf": ["inf", "-inf", 1.5],
        "huge": hex(10**5000),
        "keys": {"(1, 2)": "tuple", "null": "none", "true": "bool", "2.5": "float", "nan": "nan"},
        "cycle": [1, "<circular reference>"],
        "obj": "<class 'object'>",
        "id": 4,
    }


anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    # Too long for int-to-decimal conversion.
    | st.integers(0, 9).map(lambda n: n - 10**5000)
    | st.floats()
    | st.text()
    | st.builds(object),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(
            st.text() | st.integers() | st.floats() | st.tuples(st.integers()), inner, max_size=3
        )
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), anything, max_size=4))
def test_any_event_makes_one_frame_of_strict_json(payload: dict[str, Any]) -> None:
    data = data_of({**payload, "type": "x", "id": 1})
    assert data["id"] == 1
    assert data.keys() == {*payload, "type", "id"}
