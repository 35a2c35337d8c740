"""``/api/v1/tokens``: token administration (admin only), and ``/api/v1/me`` for any caller."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import Role, TokenError, TokenInfo, create_token, get_token, list_tokens, revoke_token
from api.deps import Principal, get_database, not_found, require_roles
from store.db import Database

router = APIRouter(prefix="/api/v1", tags=["tokens"])

RoleName = Literal["admin", "manager", "noc", "clerk", "technician", "finance", "customer"]


class TokenCreate(BaseModel):
    model_config = {"extra": "forbid"}

    role: RoleName
    customer_id: int | None = Field(default=None, description="required for, and only for, customer tokens")
    name: str = Field(default="", max_length=200, description="who or what uses the token")


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    customer_id: int | None
    token_prefix: str = Field(description="the token's first characters, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            id=info.id,
            name=info.name,
            role=info.role,
            customer_id=info.customer_id,
            token_prefix=info.token_prefix,
            created_at=info.created_at,
            last_used_at=info.last_used_at,
            revoked_at=info.revoked_at,
            active=info.active,
        )


class TokenCreated(TokenOut):
    token: str = Field(description="the bearer token; shown this once, store it now")


class Me(BaseModel):
    token_id: int
    role: str
    customer_id: int | None
    name: str


_admin = require_roles(Role.ADMIN)


@router.get("/tokens", summary="List tokens (never their secrets)")
async def list_all(
    include_revoked: bool = True,
    _principal: Principal = Depends(_admin),
    database: Database = Depends(get_database),
) -> list[TokenOut]:
    infos = await run_in_threadpool(list_tokens, database.engine, include_revoked=include_revoked)
    return [TokenOut.of(info) for info in infos]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create a token (shown once)")
async def create(
    body: TokenCreate,
    _principal: Principal = Depends(_admin),
    database: Database = Depends(get_database),
) -> TokenCreated:
    try:
        new = await run_in_threadpool(
            lambda: create_token(
                database.engine, role=body.role, customer_id=body.customer_id, name=body.name
            )
        )
    except TokenError as exc:
        hint = "; send customer_id" if body.role == Role.CUSTOMER and body.customer_id is None else ""
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{exc}{hint}") from exc
    return TokenCreated(**TokenOut.of(new.info).model_dump(), token=new.token)


@router.get("/tokens/{token_id}", summary="One token")
async def read(
    token_id: int, _principal: Principal = Depends(_admin), database: Database = Depends(get_database)
) -> TokenOut:
    info = await run_in_threadpool(get_token, database.engine, token_id)
    if info is None:
        raise not_found("token", token_id)
    return TokenOut.of(info)


@router.delete("/tokens/{token_id}", summary="Revoke a token (at once, for every process)")
async def revoke(
    token_id: int,
    request: Request,
    _principal: Principal = Depends(_admin),
    database: Database = Depends(get_database),
) -> TokenOut:
    try:
        info = await run_in_threadpool(revoke_token, database.engine, token_id)
    except TokenError as exc:
        raise not_found("token", token_id) from exc
    request.app.state.recent_tokens.forget(token_id)
    return TokenOut.of(info)


@router.get("/me", summary="Who the presented token is")
async def me(principal: Principal = Depends(require_roles())) -> Me:
    return Me(
        token_id=principal.token_id,
        role=principal.role,
        customer_id=principal.customer_id,
        name=principal.name,
    )
