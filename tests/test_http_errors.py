from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import Settings
from gateway.logs import JsonFormatter
from tests.conftest import Api, start_api


def assert_error_shape(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_unknown_route_and_wrong_method(api: Api) -> None:
    assert_error_shape(await api.client.get("/nope"), 404, "not_found")
    assert_error_shape(
        await api.client.delete("/admin/tenants", headers=api.admin), 405, "method_not_allowed"
    )


async def test_malformed_json_is_400(api: Api) -> None:
    response = await api.client.post(
        "/admin/tenants",
        content=b'{"name": "x", ',
        headers={**api.admin, "content-type": "application/json"},
    )
    assert_error_shape(response, 400, "malformed_json")
    empty = await api.client.post(
        "/admin/tenants", content=b"", headers={**api.admin, "content-type": "application/json"}
    )
    assert_error_shape(empty, 400, "empty_body")


async def test_wrong_content_type_is_415(api: Api) -> None:
    response = await api.client.post(
        "/admin/tenants", data={"name": "x", "slug": "xx"}, headers=api.admin
    )
    assert_error_shape(response, 415, "unsupported_media_type")
    listing = await api.client.get("/admin/tenants", headers=api.admin)
    assert listing.json()["tenants"] == []


async def test_json_array_body_is_422(api: Api) -> None:
    response = await api.client.post("/admin/tenants", json=[1, 2], headers=api.admin)
    assert_error_shape(response, 422, "validation_failed")


async def test_body_over_the_limit_is_413(make_settings: Callable[..., Settings]) -> None:
    app, client = await start_api(make_settings(MAX_BODY_BYTES="1024"))
    try:
        admin = {"Authorization": "Bearer admin-test-key-0123456789abcdef"}
        big = {"name": "x" * 2000, "slug": "big"}
        response = await client.post("/admin/tenants", json=big, headers=admin)
        assert_error_shape(response, 413, "payload_too_large")

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(4):
                yield b" " * 512

        streamed = await client.post(
            "/admin/tenants",
            content=chunks(),
            headers={**admin, "content-type": "application/json"},
        )
        assert_error_shape(streamed, 413, "payload_too_large")
        listing = await client.get("/admin/tenants", headers=admin)
        assert listing.json()["tenants"] == []
    finally:
        await client.aclose()
        await app.state.gateway.stop()


async def test_unhandled_exception_is_a_json_500_without_a_trace(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("secret internals: password=hunter2")

    api.app.router.routes.append(Route("/boom", boom))
    with caplog.at_level(logging.ERROR, logger="gateway"):
        response = await api.client.get("/boom", headers={"X-Request-Id": "req-42"})
    assert_error_shape(response, 500, "internal_error")
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert "req-42" in response.json()["error"]["message"]
    assert any(r.name == "gateway.error" for r in caplog.records), "the error is logged"


async def test_request_log_line_and_request_id(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    tenant, key = await api.create_tenant("acme")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        echoed = await api.client.get("/api/channels", headers={**key, "X-Request-Id": "abc-123"})
        generated = await api.client.get("/healthz")
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "gateway.access"
    ]
    first = next(line for line in lines if line["request_id"] == "abc-123")
    assert first["method"] == "GET" and first["path"] == "/api/channels"
    assert first["status"] == 200 and first["tenant_id"] == tenant["id"]
    assert isinstance(first["duration_ms"], float)


async def test_a_hostile_request_id_is_replaced(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-Id": 'x" injected'})
    assert response.headers["x-request-id"] != 'x" injected'


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["pending_migrations"] == []


async def test_readiness_reports_pending_migrations(api: Api, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(api.gateway.settings.migrations_dir, folder)
    (folder / "9999_pending_probe.sql").write_text("CREATE TABLE probe (id INTEGER);")
    api.gateway.settings.migrations_dir = folder
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["pending_migrations"] == ["9999_pending_probe.sql"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/admin/tenants", {"GET", "HEAD", "POST"}),
        ("DELETE", "/api/channels/email/config", {"GET", "HEAD", "POST", "PUT"}),
        ("PATCH", "/api/channels/sms/config", {"GET", "HEAD", "POST", "PUT"}),
        ("PUT", "/api/appointments/apt_1", {"GET", "HEAD", "PATCH"}),
        ("GET", "/api/channels/sms/send", {"POST"}),
    ],
)
async def test_405_allow_lists_every_method_of_the_path(
    api: Api, method: str, path: str, allowed: set[str]
) -> None:
    response = await api.client.request(method, path, headers=api.admin)
    assert_error_shape(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == allowed
    assert set(response.json()["error"]["details"]["allowed_methods"]) == allowed
