"""Token endpoints: users' stored credentials and the registry's own JWTs (docs/credentials.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from registry.api.deps import CurrentPrincipal, RuntimeDep
from registry.api.errors import responses
from registry.api.schemas.pagination import Page, Pagination, PerPage
from registry.api.schemas.tokens import (
    GenerateTokensRequest,
    GenerateTokensResponse,
    IssuedTokensPublic,
    RefreshJwtRequest,
    TokenCreate,
    TokenList,
    TokenPublic,
    TokenRefreshed,
    TokenRefreshRequest,
    TokenWithValue,
)
from registry.auth import IssuedTokens
from registry.services import token_jwt, token_refresh, tokens
from registry.services.token_types import ApiTokenType

router = APIRouter(prefix="/tokens", tags=["tokens"])
# Without a bearer token (the refresh JWT in the body is the credential), so outside the
# router whose routes need the caller's scopes.
exchange_router = APIRouter(prefix="/tokens", tags=["tokens"])

_OBJECT_ID = r"^[0-9a-fA-F]{24}$"


def _public(token: tokens.StoredToken) -> TokenPublic:
    return TokenPublic.model_validate(token, from_attributes=True)


def _issued(issued: IssuedTokens) -> GenerateTokensResponse:
    return GenerateTokensResponse(tokens=IssuedTokensPublic(**issued.model_dump()))


@router.post(
    "/generate",
    summary="Issue an access JWT and a refresh JWT for the caller",
    responses=responses(400, 401, 403, 422),
)
async def generate_tokens(
    user: CurrentPrincipal, runtime: RuntimeDep, body: GenerateTokensRequest | None = None
) -> GenerateTokensResponse:
    body = body or GenerateTokensRequest()  # every field is optional, so is the body
    issued = token_jwt.generate_jwt_pair(
        issuer=runtime.issuer,
        user=user,
        requested_scopes=body.requested_scopes,
        expires_in_hours=body.expires_in_hours,
        description=body.description,
    )
    return _issued(issued)


@exchange_router.post(
    "/jwt/refresh",
    summary="Exchange a refresh JWT for a new access JWT (no bearer header: the body is the "
    "credential)",
    responses=responses(401, 422),
)
async def refresh_jwt(body: RefreshJwtRequest, runtime: RuntimeDep) -> GenerateTokensResponse:
    issued = token_jwt.refresh_jwt(
        verifier=runtime.verifier, issuer=runtime.issuer, refresh_token=body.refresh_token
    )
    return _issued(issued)


@router.post(
    "",
    status_code=201,
    summary="Store (or replace) one of the caller's credentials, encrypted",
    responses=responses(400, 401, 403, 422),
)
async def create_token(body: TokenCreate, user: CurrentPrincipal) -> TokenPublic:
    stored = await tokens.store_token(
        user=user,
        api_type=body.type,
        identifier=body.identifier,
        value=body.token,
        expires_at=body.expires_at,
        metadata=body.metadata,
        metadata_given="metadata" in body.model_fields_set,
    )
    return _public(stored)


@router.get(
    "",
    summary="List credentials (never their values); admins may list any user's",
    responses=responses(400, 401, 403, 422),
)
async def list_tokens(
    user: CurrentPrincipal,
    type: Annotated[ApiTokenType | None, Query()] = None,  # the design names it "type"
    identifier: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    user_id: Annotated[str | None, Query(pattern=_OBJECT_ID)] = None,
    page: Page = 1,
    per_page: PerPage = 50,
    include_expired: Annotated[
        bool, Query(description="Admins only: also list records past expiresAt")
    ] = False,
) -> TokenList:
    result = await tokens.list_tokens(
        user=user,
        api_type=type,
        identifier=identifier,
        owner_id=user_id,
        page=page,
        per_page=per_page,
        include_expired=include_expired,
    )
    return TokenList(
        tokens=[_public(token) for token in result.tokens],
        pagination=Pagination.of(result),
    )


@router.get(
    "/{token_id}",
    summary="Read one of the caller's own credentials, decrypted",
    responses=responses(401, 404, 409),
)
async def get_token(token_id: str, user: CurrentPrincipal) -> TokenWithValue:
    stored, value = await tokens.get_token_value(user=user, token_id=token_id)
    return TokenWithValue(**_public(stored).model_dump(), token=value)


@router.put(
    "/{token_id}/refresh",
    summary="Replace an OAuth access token (and its refresh token) atomically",
    responses=responses(400, 401, 404, 409, 422),
)
async def refresh_token(
    token_id: str, body: TokenRefreshRequest, user: CurrentPrincipal
) -> TokenRefreshed:
    result = await token_refresh.refresh_token(
        user=user,
        token_id=token_id,
        new_access_token=body.new_access_token,
        new_expires_at=body.new_expires_at,
        new_refresh_token=body.new_refresh_token,
    )
    return TokenRefreshed(
        id=result.token.id,
        type=result.token.type,
        identifier=result.token.identifier,
        token=body.new_access_token,
        expires_at=result.token.expires_at,
        updated_at=result.updated_at,
        refresh_token_id=result.refresh_token_id,
    )


@router.delete(
    "/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a credential (the owner's, or any for admins)",
    responses=responses(401, 404),
)
async def delete_token(token_id: str, user: CurrentPrincipal) -> Response:
    await tokens.delete_token(user=user, token_id=token_id)
    return Response(status_code=204)
