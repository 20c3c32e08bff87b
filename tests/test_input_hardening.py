"""Hostile and careless input never answers 500: bodies that json cannot hold (deep nesting,
huge numbers, NaN, lone surrogates), dates out of range, blank form fields, control
characters in bodies and headers, and slow or vanishing clients on a real socket."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from gateway.sandbox.server import free_port
from tests.conftest import ADMIN_KEY, TWILIO, Api, running_api
from tests.test_http_errors import assert_error_shape

CLIENT = "+33612345678"
SECRET = "vapi-secret-hardening-0001"
JSON = {"content-type": "application/json"}


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO, VAPI_WEBHOOK_SECRET=SECRET)) as running:
        yield running


async def sms_tenant(api: Api, slug: str = "acme") -> dict[str, str]:
    _, key = await api.create_tenant(slug)
    response = await api.client.post(
        "/api/channels/sms/toggle", json={"enabled": True}, headers=key
    )
    assert response.status_code == 200, response.text
    return key


async def count(api: Api, table: str) -> int:
    row = await api.gateway.db.fetchone(f"SELECT COUNT(*) AS n FROM {table}")
    return int(row["n"])


def fields_of(response: httpx.Response) -> set[str]:
    assert_error_shape(response, 422, "validation_failed")
    return {f["field"] for f in response.json()["error"]["details"]["fields"]}


# -- bodies json cannot hold ----------------------------------------------------------------

HOSTILE_BODIES = {
    "100k levels of nesting": b"[" * 100_000 + b"]" * 100_000,
    "100 levels of objects": b'{"a":' * 100 + b"1" + b"}" * 100,
    "an integer of 5,000 digits": b'{"name": ' + b"7" * 5000 + b', "slug": "ab"}',
    "NaN": b'{"name": NaN, "slug": "ab"}',
    "Infinity": b'{"metadata": {"x": -Infinity}}',
    "a float out of range": b'{"name": "x", "slug": "ab", "metadata": 1e999}',
    "a lone surrogate": b'{"name": "\\ud800", "slug": "ab"}',
    "a lone surrogate in a key": b'{"\\udfff": 1}',
}
JSON_ENDPOINTS = [
    ("POST", "/admin/tenants", "admin"),
    ("POST", "/api/channels/sms/send", "tenant"),
    ("PUT", "/api/channels/email/config", "tenant"),
    ("POST", "/api/appointments", "tenant"),
    ("PATCH", "/api/appointments/apt_x", "tenant"),
    ("POST", "/api/vapi/functions", "vapi"),
]


@pytest.mark.refused_before_the_store
@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=list(HOSTILE_BODIES))
@pytest.mark.parametrize(("method", "path", "auth"), JSON_ENDPOINTS)
async def test_bodies_json_cannot_hold_are_400_malformed_json(
    api: Api, method: str, path: str, auth: str, body: bytes
) -> None:
    _, key = await api.create_tenant("acme")
    headers = {"admin": api.admin, "tenant": key, "vapi": {"x-vapi-secret": SECRET}}[auth]
    response = await api.client.request(method, path, content=body, headers={**headers, **JSON})
    assert_error_shape(response, 400, "malformed_json")
    assert await count(api, "tenants") == 1
    assert await count(api, "channel_messages_log") == 0


async def test_nesting_within_the_limit_is_read(api: Api) -> None:
    key = await sms_tenant(api)
    nested: Any = "deep"
    for _ in range(40):
        nested = {"level": nested}
    response = await api.client.post(
        "/api/channels/sms/send",
        json={"to": CLIENT, "body": "hi", "metadata": {"tree": nested}},
        headers=key,
    )
    assert response.status_code == 202, response.text


# -- dates and instants out of range --------------------------------------------------------

OUT_OF_RANGE_INSTANTS = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00+00:00",
]
OUT_OF_RANGE_DAYS = ["0001-01-01", "9999-12-31", "1969-12-31"]


def _send(at: str) -> dict[str, Any]:
    return {"to": CLIENT, "body": "hi", "send_at": at}


def _book(at: str) -> dict[str, Any]:
    return {"customer_name": "Ana", "customer_phone": CLIENT, "starts_at": at}


@pytest.mark.refused_before_the_store
@pytest.mark.parametrize("value", OUT_OF_RANGE_INSTANTS)
@pytest.mark.parametrize(
    ("method", "path", "where", "field"),
    [
        ("POST", "/api/channels/sms/send", "send", "send_at"),
        ("POST", "/api/channels/email/send", "email", "send_at"),
        ("POST", "/api/appointments", "book", "starts_at"),
        ("PATCH", "/api/appointments/apt_unknown", "move", "starts_at"),
        ("GET", "/api/appointments", "from", "from"),
        ("GET", "/api/appointments", "to", "to"),
        ("GET", "/api/messages", "since", "since"),
        ("GET", "/api/messages", "until", "until"),
        ("GET", "/api/metrics/messages", "start", "start"),
        ("GET", "/api/metrics/calls", "end", "end"),
        ("GET", "/api/metrics/unprofitable", "start", "start"),
    ],
)
async def test_instants_out_of_range_are_422_naming_the_field(
    api: Api, method: str, path: str, where: str, field: str, value: str
) -> None:
    key = await sms_tenant(api)
    if method == "GET":
        response = await api.client.get(path, params={where: value}, headers=key)
    else:
        body = {
            "send": _send(value),
            "email": {"to": "a@example.com", "subject": "s", "text": "t", "send_at": value},
            "book": _book(value),
            "move": {"starts_at": value},
        }[where]
        response = await api.client.request(method, path, json=body, headers=key)
    assert fields_of(response) == {field}
    assert "between 1970-01-01 and 2999-12-31" in response.text
    assert await count(api, "channel_messages_log") == 0
    assert await count(api, "rendez_vous") == 0


@pytest.mark.refused_before_the_store
@pytest.mark.parametrize("value", OUT_OF_RANGE_DAYS)
@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/availability", {"date": "{}"}, "date"),
        ("/api/availability", {"start": "{}", "end": "2026-12-01"}, "start"),
        ("/api/availability", {"start": "2026-12-01", "end": "{}"}, "end"),
        ("/api/metrics/messages", {"start": "{}"}, "start"),
        ("/api/metrics/messages", {"end": "{}"}, "end"),
    ],
)
async def test_days_out_of_range_are_422_naming_the_field(
    api: Api, path: str, params: dict[str, str], field: str, value: str
) -> None:
    _, key = await api.create_tenant("acme")
    query = {name: given.format(value) for name, given in params.items()}
    assert fields_of(await api.client.get(path, params=query, headers=key)) == {field}


@pytest.mark.parametrize("value", [*OUT_OF_RANGE_INSTANTS, "0001-01-01", "9999-12-31"])
async def test_operator_metrics_bounds_out_of_range_are_422(api: Api, value: str) -> None:
    response = await api.client.get("/admin/metrics", params={"end": value}, headers=api.admin)
    assert fields_of(response) == {"end"}


async def test_instants_are_iso_strings_not_numbers(api: Api) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(
        "/api/channels/sms/send", json={**_send("x"), "send_at": 7}, headers=key
    )
    assert fields_of(response) == {"send_at"}


async def test_instants_inside_the_range_still_work(api: Api) -> None:
    key = await sms_tenant(api)
    later = await api.client.post(
        "/api/channels/sms/send", json=_send("2999-12-31T10:00:00+14:00"), headers=key
    )
    assert later.status_code == 202, later.text
    assert later.json()["send_at"].startswith("2999-12-30T20:00:00")
    listed = await api.client.get(
        "/api/messages", params={"since": "1970-01-01T00:00:00Z"}, headers=key
    )
    assert [m["id"] for m in listed.json()["messages"]] == [later.json()["id"]]


# -- blank optional fields mean "not given" -------------------------------------------------


async def test_blank_optional_fields_of_a_settings_form_are_unset(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    form = {
        "host": "smtp.example.com",
        "port": "",
        "username": "",
        "password": "",
        "from_email": "agenda@example.com",
        "from_name": "",
        "reply_to": "",
    }
    for method in ("POST", "PUT"):
        response = await api.client.request(
            method, "/api/channels/email/config", json=form, headers=key
        )
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["settings"]["reply_to"] is None and view["settings"]["from_name"] is None
        assert view["settings"]["port"] is None and view["secrets"]["password"] == {"set": False}
        assert view["configured"] is True


async def test_blank_optional_fields_of_a_send_are_unset(api: Api) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(
        "/api/channels/sms/send",
        json={
            "to": CLIENT,
            "body": "hi",
            "template": "",
            "agent": "",
            "message_type": "",
            "send_at": "",
            "call_id": "",
        },
        headers=key,
    )
    assert response.status_code == 202, response.text
    message = response.json()
    assert message["agent"] is None and message["send_at"] is None
    assert message["message_type"] == "transactional"


async def test_blank_optional_query_parameters_are_unset(api: Api) -> None:
    key = await sms_tenant(api)
    sent = await api.client.post("/api/channels/sms/send", json=_send(""), headers=key)
    assert sent.status_code == 202, sent.text
    listed = await api.client.get("/api/messages?channel=&status=&since=&cursor=&to=", headers=key)
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["messages"]] == [sent.json()["id"]]
    booked = await api.client.get("/api/appointments?status=&phone=&from=", headers=key)
    assert booked.status_code == 200, booked.text


async def test_blank_optional_fields_of_admin_and_booking_bodies_are_unset(api: Api) -> None:
    created = await api.client.post(
        "/admin/tenants",
        json={"name": "Cabinet", "slug": "cabinet", "timezone": "", "country": ""},
        headers=api.admin,
    )
    assert created.status_code == 201, created.text
    tenant = created.json()["tenant"]
    assert tenant["timezone"] == "Europe/Paris" and tenant["country"] is None
    key = await api.client.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"label": ""}, headers=api.admin
    )
    assert key.status_code == 201 and key.json()["label"] is None
    availability = await api.client.get(
        "/api/availability?date=2026-12-01&start=&end=&duration=",
        headers={"Authorization": f"Bearer {created.json()['api_key']}"},
    )
    assert availability.status_code == 200, availability.text


async def test_blank_required_fields_are_still_422_naming_them(api: Api) -> None:
    tenant = await api.client.post(
        "/admin/tenants", json={"name": "", "slug": ""}, headers=api.admin
    )
    assert fields_of(tenant) == {"name", "slug"}
    key = await sms_tenant(api)
    sms = await api.client.post(
        "/api/channels/sms/send", json={"to": "", "body": "hi"}, headers=key
    )
    assert fields_of(sms) == {"to"}
    toggle = await api.client.post("/api/channels/sms/toggle", json={"enabled": ""}, headers=key)
    assert fields_of(toggle) == {"enabled"}
    assert await count(api, "tenants") == 1 and await count(api, "channel_messages_log") == 0


# -- control characters in bodies and headers ------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "body", "field"),
    [
        ("sms", {"to": CLIENT, "body": "hello\x00world"}, "body"),
        ("sms", {"to": CLIENT, "body": "line\u2028separator"}, "body"),
        ("sms", {"to": CLIENT, "body": "escape \x1b[31m"}, "body"),
        (
            "sms",
            {"to": CLIENT, "template": "t", "variables": {"name": "x\x00"}},
            "variables.name",
        ),
        ("email", {"to": "a@example.com", "subject": "s", "text": "para\u2029graph"}, "text"),
        ("email", {"to": "a@example.com", "subject": "s", "html": "<p>\x00</p>"}, "html"),
        ("email", {"to": "a@example.com", "subject": "s\x00", "text": "t"}, "subject"),
        ("email", {"to": "a@example.com", "subject": "s\u2028Bcc: x@y.z", "text": "t"}, "subject"),
        ("whatsapp", {"to": CLIENT, "text": "bonjour\u2029"}, "text"),
        ("sms", {"to": CLIENT, "body": "hi", "agent": "sara\r\n"}, "agent"),
    ],
)
async def test_control_characters_are_refused_at_accept_time(
    api: Api, channel: str, body: dict[str, Any], field: str
) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(f"/api/channels/{channel}/send", json=body, headers=key)
    assert fields_of(response) == {field}
    assert await count(api, "channel_messages_log") == 0


async def test_tabs_and_line_breaks_are_welcome_in_bodies(api: Api) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "a\tb\r\nc\nd"}, headers=key
    )
    assert response.status_code == 202, response.text
    assert response.json()["body"] == "a\tb\r\nc\nd"


@pytest.mark.parametrize(
    ("channel", "settings", "field"),
    [
        ("sms", {"templates": {"rappel": "Bonjour\x00 {name}"}}, "templates.rappel"),
        ("sms", {"templates": {"rappel": "Bonjour\u2028{name}"}}, "templates.rappel"),
        ("email", {"from_name": "Cabinet\x1b"}, "from_name"),
        ("email", {"username": "user\x00"}, "username"),
        ("phone", {"greeting": "Bonjour\x00"}, "greeting"),
    ],
)
async def test_control_characters_in_channel_settings_are_refused(
    api: Api, channel: str, settings: dict[str, Any], field: str
) -> None:
    _, key = await api.create_tenant("acme")
    before = (await api.client.get(f"/api/channels/{channel}/config", headers=key)).json()
    response = await api.client.put(f"/api/channels/{channel}/config", json=settings, headers=key)
    assert fields_of(response) == {field}
    after = (await api.client.get(f"/api/channels/{channel}/config", headers=key)).json()
    assert after["settings"] == before["settings"]


async def test_control_characters_in_appointment_fields_are_refused(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    for fields, field in (
        ({"notes": "call back\x00"}, "notes"),
        ({"customer_name": "Ana\u2028Martin"}, "customer_name"),
        ({"service": "Soin\r\nX-Injected: 1"}, "service"),
    ):
        body = {**_book("2026-12-01T09:00:00+01:00"), **fields}
        response = await api.client.post("/api/appointments", json=body, headers=key)
        assert fields_of(response) == {field}
    assert await count(api, "rendez_vous") == 0


@pytest.mark.parametrize("name", ["Cabinet\r\nDupont", "Cabinet\nDupont", "Cabinet\u2028", "A\x00"])
async def test_a_tenant_name_on_more_than_one_line_is_refused(api: Api, name: str) -> None:
    response = await api.client.post(
        "/admin/tenants", json={"name": name, "slug": "dupont"}, headers=api.admin
    )
    assert fields_of(response) == {"name"}
    assert await count(api, "tenants") == 0


# -- slow and vanishing clients, on a real socket ---------------------------------------------


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[int, Any]]:
    """The gateway under uvicorn with the options `gateway serve` uses, on loopback."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        **app.state.uvicorn_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield port, app
    finally:
        server.should_exit = True
        thread.join(10)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (at most 10 s)."""
    sock.settimeout(10)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail("the server kept the connection open")
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def tenants_listed(port: int) -> list[Any]:
    response = httpx.get(
        f"http://127.0.0.1:{port}/admin/tenants",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    tenants: list[Any] = response.json()["tenants"]
    return tenants


def _post_head(length: int) -> bytes:
    return (
        "POST /admin/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_half_sent_headers_get_408_and_the_connection_closes(
    make_settings: Callable[..., Settings],
) -> None:
    with serving(make_settings(HEADER_READ_TIMEOUT_SECONDS="0.3")) as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /admin/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            answer = read_answer(sock)
        assert status_and_error(answer) == (408, "request_timeout")
        # the server still answers others
        assert tenants_listed(port) == []


def test_headers_that_never_end_get_431(make_settings: Callable[..., Settings]) -> None:
    with serving(make_settings()) as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
            for _ in range(80):
                sock.sendall(b"a" * 1024)
            answer = read_answer(sock)
        assert status_and_error(answer) == (431, "headers_too_large")


def test_a_client_still_sending_after_the_431_still_reads_it(
    make_settings: Callable[..., Settings],
) -> None:
    """The server stops reading at the limit but keeps draining what the client still sends
    until the client has read the answer: closing at once makes the kernel reset the connection
    on the next bytes, and the reset can destroy the 431 before the client reads it."""
    with serving(make_settings()) as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
            for _ in range(80):
                sock.sendall(b"a" * 1024)
            time.sleep(0.3)  # the server has answered and, before the fix, closed
            for _ in range(64):
                sock.sendall(b"a" * 1024)
            time.sleep(0.3)
            answer = read_answer(sock)
        assert status_and_error(answer) == (431, "headers_too_large")


def test_a_body_over_the_limit_gets_one_413_and_the_connection_ends(
    make_settings: Callable[..., Settings],
) -> None:
    """The 413 is answered from Content-Length, before the body arrives; the body the client
    still streams is drained, not parsed as a next request (it used to get a second answer, a
    431, after the 413), and the client reads its 413 without a reset."""
    with serving(make_settings()) as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            size = 2 * 1024 * 1024
            sock.sendall(_post_head(size))
            time.sleep(0.3)  # the 413 is out before the body
            for _ in range(size // 65536):
                sock.sendall(b"a" * 65536)
            answer = read_answer(sock)
        assert answer.count(b"HTTP/1.1 ") == 1
        assert status_and_error(answer) == (413, "payload_too_large")
        assert tenants_listed(port) == []


def test_a_short_body_gets_408_and_nothing_is_written(
    make_settings: Callable[..., Settings],
) -> None:
    with serving(make_settings(BODY_READ_TIMEOUT_SECONDS="0.3")) as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(_post_head(100) + b'{"name": "')
            answer = read_answer(sock)
        assert status_and_error(answer) == (408, "request_timeout")
        assert b"connection: close" in answer.lower()
        assert tenants_listed(port) == []


def test_keep_alive_still_serves_a_second_request(make_settings: Callable[..., Settings]) -> None:
    with serving(make_settings(HEADER_READ_TIMEOUT_SECONDS="5")) as (port, _):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            first = client.get("/healthz")
            second = client.get("/healthz")
        assert first.status_code == second.status_code == 200


def test_a_client_gone_mid_body_is_a_499_line_without_a_traceback(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="gateway"),
        serving(make_settings()) as (port, _),
    ):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(_post_head(100) + b'{"name": "')
        for _ in range(500):
            if any(r.name == "gateway.access" for r in caplog.records):
                break
            time.sleep(0.01)
        access = [r for r in caplog.records if r.name == "gateway.access"]
        assert [getattr(r, "status", None) for r in access] == [499]
        assert access[0].levelno == logging.INFO
        assert not [r for r in caplog.records if r.name == "gateway.error" or r.exc_info]
        assert tenants_listed(port) == []
