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
        if isinstance(route, Route)
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
