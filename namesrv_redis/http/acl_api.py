"""Admin API of the ACL credentials (admin token required, like every admin call).

``GET /v1/acl/credentials`` lists access keys and permissions (never secrets);
``PUT /v1/acl/credentials/{accessKey}`` creates or replaces one; ``DELETE`` removes it.
The credentials live in Redis, so every pod sees a change within ``aclRefreshMs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from namesrv_redis.store.acl import AclStore, validate


class CredentialIn(BaseModel):
    secretKey: str = Field(min_length=1)
    permission: str = Field(pattern="^(admin|broker)$")


class CredentialOut(BaseModel):
    accessKey: str
    permission: str


class CredentialsOut(BaseModel):
    credentials: list[CredentialOut]


def add_acl_routes(app: FastAPI, acl: AclStore, require_admin: Callable[..., Any]) -> None:
    admin = [Depends(require_admin)]

    @app.get("/v1/acl/credentials", response_model=CredentialsOut, dependencies=admin)
    async def list_credentials() -> CredentialsOut:
        creds = await acl.all()
        return CredentialsOut(
            credentials=[
                CredentialOut(accessKey=c.access_key, permission=c.permission.value)
                for c in sorted(creds.values(), key=lambda c: c.access_key)
            ]
        )

    @app.put("/v1/acl/credentials/{accessKey}", response_model=CredentialOut, dependencies=admin)
    async def put_credential(accessKey: str, body: CredentialIn) -> Response:
        try:
            cred = validate(accessKey, body.secretKey, body.permission)
        except ValueError as e:
            return JSONResponse({"error": "bad_request", "detail": str(e)}, status_code=422)
        await acl.put(cred)
        return JSONResponse({"accessKey": cred.access_key, "permission": cred.permission.value})

    @app.delete("/v1/acl/credentials/{accessKey}", status_code=204, dependencies=admin)
    async def delete_credential(accessKey: str) -> Response:
        if not await acl.delete(accessKey):
            return JSONResponse(
                {"error": "not_found", "detail": f"no credential {accessKey!r}"}, status_code=404
            )
        return Response(status_code=204)
