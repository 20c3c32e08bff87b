from __future__ import annotations

import re

from starlette.routing import Route

from tests.conftest import Api


async def test_every_route_is_documented(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for route in api.app.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served, "the app serves routes"
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes that do not exist"


async def test_request_models_are_the_validating_models(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    create = doc["paths"]["/admin/tenants"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"name", "slug"}
    assert schema["additionalProperties"] is False
    assert "422" in create["responses"]
    config = doc["paths"]["/api/channels/{channel_type}/config"]["put"]
    one_of = config["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    names = {r["$ref"].rsplit("/", 1)[1] for r in one_of}
    assert names == {"PhoneConfig", "SmsConfig", "EmailConfig", "WhatsAppConfig"}
    for name in names:
        assert name in doc["components"]["schemas"]
    params = {p["name"] for p in doc["paths"]["/admin/tenants"]["get"]["parameters"]}
    assert params == {"limit", "after"}
    for path in doc["paths"]:
        for placeholder in re.findall(r"{(\w+)}", path):
            for op in doc["paths"][path].values():
                assert placeholder in {p["name"] for p in op["parameters"]}


async def test_every_operation_documents_its_client_errors(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    missing = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            expected = {code for code in codes if code.startswith("4")} or {"4xx"}
            if op.get("security"):
                expected |= {"401", "403"}
            if any(p["in"] == "query" for p in op.get("parameters", [])):
                expected.add("422")
            if op.get("security") and "{" in path:
                expected.add("404")
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                expected |= {"400", "413", "415", "422"}
            for code in sorted(expected - codes):
                missing.append(f"{method.upper()} {path}: {code}")
            for code in codes - {"200", "201", "202", "204"}:
                assert op["responses"][code]["description"], f"{method} {path} {code}"
                if code.startswith("4"):
                    content = op["responses"][code]["content"]["application/json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/Error"}
    assert missing == [], "operations without their 4xx responses"


async def test_the_vapi_server_url_documents_its_envelope(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    body = doc["paths"]["/api/vapi/functions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert doc["components"]["schemas"][ref]["required"] == ["message"]
