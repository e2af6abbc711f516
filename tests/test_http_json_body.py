"""Admin bodies are JSON whatever their ``Content-Type`` claims (``curl -d`` says form data):
for every declared type, a clear 400 for a body that is not JSON, an OpenAPI document that
still describes JSON bodies. The documented ``curl`` commands themselves run in
tests/test_http_curl.py."""

from __future__ import annotations

import pytest

from tests.test_http import ADMIN, Tier, register, sim_broker, tier  # noqa: F401

DECLARED_TYPES = [
    None,
    "application/json",
    "application/x-www-form-urlencoded",  # curl -d
    "text/plain",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=x",
]


@pytest.mark.parametrize("content_type", DECLARED_TYPES)
async def test_json_bodies_whatever_the_content_type(
    tier: Tier,  # noqa: F811
    content_type: str | None,
) -> None:
    c = await register(tier, sim_broker())
    headers = dict(ADMIN)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with tier.http() as http:
        put = await http.put("/v1/kv/NS/k", content=b'{"value": "v1"}', headers=headers)
        assert (put.status_code, put.json()) == (
            200,
            {"namespace": "NS", "key": "k", "value": "v1"},
        )
        assert (await http.get("/v1/kv/NS/k")).json()["value"] == "v1"
        off = await http.post(
            "/v1/brokers/broker-a/write-permission",
            content=b'{"enabled": false}',
            headers=headers,
        )
        assert off.status_code == 200 and off.json()["enabled"] is False, off.text
        assert off.json()["topicCount"] == 2
    await c.close()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/json"])
async def test_a_body_that_is_not_json_is_a_clear_400(
    tier: Tier,  # noqa: F811
    content_type: str,
) -> None:
    headers = {**ADMIN, "Content-Type": content_type}
    async with tier.http() as http:
        for body in (b"value=v1", b'{"value": "v1"', b"{'value': 'v1'}"):
            r = await http.put("/v1/kv/NS/k", content=body, headers=headers)
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "invalid_json"
            assert "not JSON" in r.json()["detail"]
        assert (await http.get("/v1/kv/NS/k")).status_code == 404  # nothing written
        # JSON of the wrong shape is still a validation error naming the field
        wrong = await http.put("/v1/kv/NS/k", content=b'{"valu": 1}', headers=headers)
        assert wrong.status_code == 422 and "body.value" in wrong.json()["detail"]


async def test_openapi_still_describes_json_bodies(tier: Tier) -> None:  # noqa: F811
    async with tier.http() as http:
        doc = (await http.get("/openapi.json")).json()
    for path, method, model in (
        ("/v1/kv/{namespace}/{key}", "put", "KvValue"),
        ("/v1/brokers/{brokerName}/write-permission", "post", "WritePermRequest"),
    ):
        op = doc["paths"][path][method]
        assert op["requestBody"]["content"] == {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}
        }
        assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorModel"
        }
