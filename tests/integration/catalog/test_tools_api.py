"""``/api/v1/tools``: filters, pagination, visibility per scope/role/group, governance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from fastapi import FastAPI
from httpx import AsyncClient

from packages.models.audit import AuditLog
from packages.models.tools import Tool
from registry.config import Settings
from registry.services import catalog_cache
from registry.services.catalog_sync import sync_server_tools
from tests.factories import Caller, make_caller
from tests.integration.catalog.helpers import insert_server, raw_server, stored_tool, tool


async def seed(settings: Settings) -> dict[str, Any]:
    """Two shared servers, one private server of ``alice``, tools in several states."""
    alice = make_caller(settings, role="user", groups=("finance",))
    bob = make_caller(settings, role="user", groups=("support",))
    admin = make_caller(settings, role="admin")
    erp = await insert_server(name="erp")
    web = await insert_server(name="web", scope="shared_user")
    mine = await insert_server(name="mine", scope="private_user", author=alice.id)
    await sync_server_tools(
        server=erp,
        discovered=[tool("get_invoice"), tool("modify_ledger"), tool("old_report")],
        trigger="register",
    )
    await sync_server_tools(
        server=erp, discovered=[tool("get_invoice"), tool("modify_ledger")], trigger="scheduled"
    )
    await sync_server_tools(
        server=web, discovered=[tool("fetch"), tool("draw")], trigger="register"
    )
    await sync_server_tools(server=mine, discovered=[tool("notes")], trigger="register")
    await Tool.find_one({"serverId": erp.id, "name": "modify_ledger"}).update(
        {"$set": {"allowedGroups": ["finance"]}}
    )
    await Tool.find_one({"serverId": web.id, "name": "draw"}).update(
        {"$set": {"exposureState": "disabled"}}
    )
    return {"alice": alice, "bob": bob, "admin": admin, "erp": erp, "web": web, "mine": mine}


def names(body: dict[str, Any]) -> list[str]:
    return [f"{t['serverName']}/{t['name']}" for t in body["tools"]]


async def list_as(client: AsyncClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/tools", headers=caller.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_list_tools_admin_default_hides_stale_and_disabled(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)

    body = await list_as(client, data["admin"])

    assert names(body) == [
        "erp/get_invoice",
        "erp/modify_ledger",
        "mine/notes",
        "web/fetch",
    ]
    assert body["pagination"] == {"total": 4, "page": 1, "per_page": 20, "total_pages": 1}
    first = body["tools"][0]
    assert first["exposureState"] == "active"
    assert first["registrationState"] == "selected"
    assert first["metadata"] == {
        "read_only": True,
        "destructive": False,
        "human_approval_required": False,
        "cost_tier": None,
    }
    assert first["metadataSource"]["read_only"] == "heuristic"
    assert first["serverId"] == str(data["erp"].id)


async def test_list_tools_admin_include_flags_show_hidden(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)

    stale = await list_as(client, data["admin"], include_stale="true")
    both = await list_as(client, data["admin"], include_stale="true", include_disabled="true")

    assert "erp/old_report" in names(stale)
    assert "web/draw" not in names(stale)
    assert both["pagination"]["total"] == 6


async def test_list_tools_user_include_stale_forbidden(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)

    response = await client.get(
        "/api/v1/tools", headers=data["bob"].headers, params={"include_stale": "true"}
    )

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_list_tools_user_sees_allowed_tools_of_visible_servers(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)

    alice = await list_as(client, data["alice"])
    bob = await list_as(client, data["bob"])

    assert names(alice) == ["erp/get_invoice", "erp/modify_ledger", "mine/notes", "web/fetch"]
    assert names(bob) == ["erp/get_invoice", "web/fetch"]
    assert bob["pagination"]["total"] == 2


async def test_list_tools_filters(app: FastAPI, client: AsyncClient, settings: Settings) -> None:
    data = await seed(settings)
    admin = data["admin"]
    await Tool.find_one({"name": "fetch"}).update({"$set": {"tags": ["web", "http"]}})

    by_server = await list_as(client, admin, server_id=str(data["erp"].id))
    by_state = await list_as(client, admin, exposure_state="disabled")
    by_registration = await list_as(client, admin, registration_state="stale")
    by_tag = await list_as(client, admin, tag="http")
    by_query = await list_as(client, admin, query="LEDGER")

    assert names(by_server) == ["erp/get_invoice", "erp/modify_ledger"]
    assert names(by_state) == ["web/draw"]
    assert names(by_registration) == ["erp/old_report"]
    assert names(by_tag) == ["web/fetch"]
    assert names(by_query) == ["erp/modify_ledger"]


async def test_list_tools_paginates_without_overlap(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)

    pages = [await list_as(client, data["alice"], page=page, per_page=3) for page in (1, 2, 3)]

    assert [names(p) for p in pages] == [
        ["erp/get_invoice", "erp/modify_ledger", "mine/notes"],
        ["web/fetch"],
        [],
    ]
    assert pages[0]["pagination"] == {"total": 4, "page": 1, "per_page": 3, "total_pages": 2}


async def test_get_tool_hidden_from_other_user_is_not_found(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    notes = await stored_tool(data["mine"], "notes")
    ledger = await stored_tool(data["erp"], "modify_ledger")

    own = await client.get(f"/api/v1/tools/{notes.id}", headers=data["alice"].headers)
    other = await client.get(f"/api/v1/tools/{notes.id}", headers=data["bob"].headers)
    group = await client.get(f"/api/v1/tools/{ledger.id}", headers=data["bob"].headers)
    bad = await client.get("/api/v1/tools/not-an-id", headers=data["bob"].headers)

    assert own.status_code == 200
    assert own.json()["name"] == "notes"
    assert (other.status_code, other.json()["message"]) == (404, "Tool not found")
    assert group.status_code == 404
    assert bad.status_code == 404


async def test_patch_disable_tool_removes_it_from_server_document(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")

    response = await client.patch(
        f"/api/v1/tools/{invoice.id}",
        headers=data["admin"].headers,
        json={"exposureState": "disabled", "updatedAt": invoice.updated_at.isoformat()},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["exposureState"], body["version"]) == ("disabled", 2)
    document = await raw_server(data["erp"])
    assert document["config"]["tools"] == "modify_ledger"
    assert document["numTools"] == 1
    audit = await AuditLog.find_one({"entity_id": invoice.id})
    assert audit is not None
    assert audit.action == "tool_updated"
    assert audit.user_id == ObjectId(data["admin"].id)
    assert audit.changes["before"]["exposureState"] == "active"
    assert audit.changes["after"]["exposureState"] == "disabled"
    history = await client.get(f"/api/v1/tools/{invoice.id}/history", headers=data["admin"].headers)
    assert history.status_code == 200
    versions = history.json()["versions"]
    assert [(v["version"], v["reason"], v["changedBy"]) for v in versions] == [
        (2, "updated", data["admin"].id),
        (1, "discovered", "sync"),
    ]
    listed = await list_as(client, data["bob"])
    assert "erp/get_invoice" not in names(listed)


async def test_patch_metadata_admin_override_and_clear(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")
    url = f"/api/v1/tools/{invoice.id}"

    set_ = await client.patch(
        url,
        headers=data["admin"].headers,
        json={"metadata": {"read_only": False, "human_approval_required": True}},
    )
    cleared = await client.patch(
        url, headers=data["admin"].headers, json={"metadata": {"read_only": None}}
    )

    assert set_.status_code == 200
    assert set_.json()["metadata"]["read_only"] is False
    assert set_.json()["metadataSource"]["read_only"] == "admin"
    assert set_.json()["adminMetadata"] == {"read_only": False, "human_approval_required": True}
    assert cleared.json()["metadata"]["read_only"] is True
    assert cleared.json()["metadataSource"]["read_only"] == "heuristic"
    assert cleared.json()["metadata"]["human_approval_required"] is True
    assert cleared.json()["version"] == 3


async def test_sync_keeps_admin_metadata_when_upstream_changes(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    ledger = await stored_tool(data["erp"], "modify_ledger")
    await client.patch(
        f"/api/v1/tools/{ledger.id}",
        headers=data["admin"].headers,
        json={"metadata": {"destructive": False}},
    )

    await sync_server_tools(
        server=data["erp"],
        discovered=[
            tool("get_invoice"),
            tool("modify_ledger", annotations={"destructiveHint": True, "readOnlyHint": False}),
        ],
        trigger="scheduled",
    )

    after = await stored_tool(data["erp"], "modify_ledger")
    assert after.metadata.destructive is False
    assert after.metadata_source["destructive"] == "admin"
    assert after.metadata_source["read_only"] == "upstream"
    assert after.annotations == {"destructiveHint": True, "readOnlyHint": False}


async def test_patch_stale_updated_at_conflicts(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")
    url = f"/api/v1/tools/{invoice.id}"
    first = await client.patch(
        url,
        headers=data["admin"].headers,
        json={"tags": ["billing"], "updatedAt": invoice.updated_at.isoformat()},
    )

    second = await client.patch(
        url,
        headers=data["admin"].headers,
        json={"tags": ["other"], "updatedAt": invoice.updated_at.isoformat()},
    )

    assert first.status_code == 200
    assert second.status_code == 409
    body = second.json()
    assert body["error"] == "conflict"
    assert body["message"] == "Tool was modified by another process"
    assert datetime.fromisoformat(body["current_updated_at"]) == datetime.fromisoformat(
        first.json()["updatedAt"]
    )
    assert datetime.fromisoformat(body["provided_updated_at"]) == invoice.updated_at
    assert (await stored_tool(data["erp"], "get_invoice")).tags == ["billing"]


async def test_patch_shared_server_tool_by_user_forbidden(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")

    response = await client.patch(
        f"/api/v1/tools/{invoice.id}",
        headers=data["bob"].headers,
        json={"exposureState": "disabled"},
    )

    assert response.status_code == 403
    assert (await stored_tool(data["erp"], "get_invoice")).exposure_state == "active"


async def test_patch_private_server_tool_by_author_allowed(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    notes = await stored_tool(data["mine"], "notes")

    response = await client.patch(
        f"/api/v1/tools/{notes.id}",
        headers=data["alice"].headers,
        json={"exposureState": "draft", "allowedRoles": ["admin"]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["allowedRoles"] == ["admin"]
    assert (await raw_server(data["mine"]))["numTools"] == 0


async def test_patch_unselected_active_rejected(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")

    response = await client.patch(
        f"/api/v1/tools/{invoice.id}",
        headers=data["admin"].headers,
        json={"registrationState": "unselected"},
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_state"
    assert "unselected tool cannot be active" in response.json()["message"]


async def test_patch_activate_on_inactive_server_conflicts(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    draw = await stored_tool(data["web"], "draw")
    await (
        data["web"]
        .get_pymongo_collection()
        .update_one({"_id": data["web"].id}, {"$set": {"status": "inactive"}})
    )

    response = await client.patch(
        f"/api/v1/tools/{draw.id}",
        headers=data["admin"].headers,
        json={"exposureState": "active"},
    )

    assert response.status_code == 409
    assert "disabled or inactive server exposes no tools" in response.json()["message"]


async def test_delete_tool_soft_deletes_and_blocks_reactivation(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")
    url = f"/api/v1/tools/{invoice.id}"

    forbidden = await client.delete(url, headers=data["alice"].headers)
    deleted = await client.delete(url, headers=data["admin"].headers)
    again = await client.delete(url, headers=data["admin"].headers)
    revive = await client.patch(
        url, headers=data["admin"].headers, json={"exposureState": "active"}
    )

    assert forbidden.status_code == 403
    assert (deleted.status_code, again.status_code) == (204, 204)
    assert revive.status_code == 409
    assert "deleted tool cannot be enabled or exposed" in revive.json()["message"]
    stored = await stored_tool(data["erp"], "get_invoice")
    assert (stored.exposure_state, stored.version) == ("deleted", 2)
    assert (await raw_server(data["erp"]))["config"]["tools"] == "modify_ledger"
    assert await AuditLog.find({"action": "tool_deleted"}).count() == 1
    resync = await sync_server_tools(
        server=data["erp"],
        discovered=[tool("get_invoice"), tool("modify_ledger")],
        trigger="scheduled",
    )
    assert "get_invoice" not in resync.exposed_tools


async def test_patch_unknown_field_rejected(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")

    response = await client.patch(
        f"/api/v1/tools/{invoice.id}",
        headers=data["admin"].headers,
        json={"exposureState": "deleted", "serverId": str(ObjectId())},
    )

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_patch_roles_invalidates_gateway_caches(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    """Roles and groups never show in the server document, yet cached tool sets must drop."""
    data = await seed(settings)
    invoice = await stored_tool(data["erp"], "get_invoice")
    seen: list[str | None] = []
    catalog_cache.add_listener(seen.append)
    try:
        response = await client.patch(
            f"/api/v1/tools/{invoice.id}",
            headers=data["admin"].headers,
            json={"allowedRoles": ["admin"]},
        )
    finally:
        catalog_cache.remove_listener(seen.append)

    assert response.status_code == 200
    assert str(data["erp"].id) in seen
