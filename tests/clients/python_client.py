#!/usr/bin/env python3
"""Issue 7: drive allman's /mcp with the official Python MCP SDK (PyPI `mcp`).

Usage: python_client.py http://127.0.0.1:PORT/mcp [legacy|2026-07-28|auto]

The mode applies to 2.x only (1.x always runs the 2025 `initialize` lifecycle): `legacy` is the
initialize handshake, `2026-07-28` the stateless revision (no handshake: `server/discover` and
per-request `_meta`), `auto` (the default) lets the SDK choose; the check then requires that
it chose 2026-07-28.

Works with the last 1.x (`mcp==1.30.0`: `streamablehttp_client` + `ClientSession`) and with
2.x (`streamable_http_client` + `Client`, which first probes `server/discover` and falls back
to `initialize` when the server answers -32601). Which API is used is decided at import time.

Every check runs against a live server; any deviation exits 1 with a message naming it, and
success prints one line starting with `PASS`.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import uuid
import warnings
from importlib.metadata import version as _dist_version
from typing import Any

import anyio

warnings.filterwarnings("ignore", category=DeprecationWarning)

try:  # mcp 1.x (1.30.0 still has it; 2.x removed it)
    from mcp.client.streamable_http import streamablehttp_client as _transport_1x

    SDK_MAJOR = 1
except ImportError:  # mcp 2.x
    from mcp.client.streamable_http import streamable_http_client as _transport_2x

    SDK_MAJOR = 2

if SDK_MAJOR == 1:
    from mcp import ClientSession
    from mcp.shared.exceptions import McpError as SdkRpcError
else:
    from mcp import Client
    from mcp.shared.exceptions import MCPError as SdkRpcError

from mcp import types as mcp_types

SDK_VERSION = _dist_version("mcp")
EXPECTED_TOOLS = {
    "create_agent", "send_message", "get_inbox", "search_messages", "fetch_inbox", "wait_for_mail",
    "reply_message", "acknowledge_message", "mark_message_read", "get_thread", "list_agents",
    "file_reservation_paths", "release_file_reservations", "renew_file_reservations",
    "check_file_reservation_conflicts", "list_file_reservations", "force_release_file_reservation",
}
INBOX_KEYS = {
    "id", "from", "subject", "body", "timestamp", "seq", "thread_id", "reply_to", "importance",
    "ack_required", "cc",
}
PROJECT_KEY = "py-sdk"
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SEARCH_DEADLINE_S = 5.0


class CheckFailed(Exception):
    pass


def fail(msg: str) -> None:
    raise CheckFailed(msg)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        fail(msg)


def wire(model: Any) -> dict[str, Any]:
    """An SDK result model as the JSON the server sent (camelCase names in 1.x and 2.x)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def text_of(result: dict[str, Any], what: str) -> str:
    content = result.get("content")
    expect(isinstance(content, list) and len(content) == 1, f"{what}: expected exactly one content block, got {content!r}")
    block = content[0]
    expect(block.get("type") == "text", f"{what}: content[0] is not text: {block!r}")
    expect(isinstance(block.get("text"), str), f"{what}: content[0].text is not a string: {block!r}")
    return block["text"]


def ok_result(result: dict[str, Any], what: str) -> tuple[Any, dict[str, Any]]:
    """(JSON parsed from the text content, structuredContent) of a successful tool result."""
    expect(result.get("isError") in (False, None), f"{what}: isError is {result.get('isError')!r}: {result!r}")
    text = text_of(result, what)
    try:
        parsed = json.loads(text)
    except ValueError as e:
        fail(f"{what}: text content is not JSON ({e}): {text!r}")
    expect("structuredContent" in result, f"{what}: structuredContent missing: {result!r}")
    sc = result["structuredContent"]
    expect(isinstance(sc, dict), f"{what}: structuredContent is not an object: {sc!r}")
    return parsed, sc


def error_result(result: dict[str, Any], what: str) -> str:
    expect(result.get("isError") is True, f"{what}: expected isError true, got {result!r}")
    text = text_of(result, what)
    expect(text.strip() != "", f"{what}: error result has an empty message")
    return text


class Api:
    """The few calls the checks need, over either SDK generation."""

    def __init__(self, target: Any) -> None:
        self.target = target  # 1.x ClientSession or 2.x Client

    async def list_tools(self) -> list[dict[str, Any]]:
        res = await self.target.list_tools()
        return wire(res)["tools"]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        res = await self.target.call_tool(name, arguments)
        return wire(res)


async def run_checks(api: Api, server_info: dict[str, Any], protocol_version: str, want: tuple[str, ...]) -> list[str]:
    done: list[str] = []

    # --- initialize (2025) or server/discover (2026-07-28) -----------------------------------
    # A pinned 2026-07-28 client skips server/discover, so it has no serverInfo to check.
    if server_info or protocol_version not in ("2026-07-28",):
        expect(server_info.get("name") == "allman", f"connect: serverInfo.name is {server_info.get('name')!r}, want 'allman'")
    expect(
        protocol_version in want,
        f"connect: negotiated protocol version {protocol_version!r}, want one of {want}",
    )
    done.append(f"connect({protocol_version})")

    # --- tools/list -------------------------------------------------------------------------
    tools = await api.list_tools()
    names = [t.get("name") for t in tools]
    expect(set(names) == EXPECTED_TOOLS and len(names) == len(EXPECTED_TOOLS), f"tools/list: got {names}, want exactly {sorted(EXPECTED_TOOLS)}")
    for t in tools:
        for key in ("inputSchema", "outputSchema"):
            schema = t.get(key)
            expect(isinstance(schema, dict) and schema.get("type") == "object", f"tools/list: {t['name']}.{key} missing or not an object schema: {schema!r}")
    done.append("tools/list")

    suffix = secrets.token_hex(4)
    name_a, name_b = f"PyA_{suffix}", f"PyB_{suffix}"
    project_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, PROJECT_KEY))

    # --- create_agent x2 --------------------------------------------------------------------
    agents = {}
    for name in (name_a, name_b):
        what = f"create_agent({name})"
        res = await api.call("create_agent", {"project_key": PROJECT_KEY, "name_hint": name, "program": "python-mcp-sdk", "model": f"mcp-{SDK_VERSION}"})
        parsed, sc = ok_result(res, what)
        expect(parsed == sc, f"{what}: structuredContent {sc!r} differs from text JSON {parsed!r}")
        expect(set(sc) == {"id", "project_id", "name", "program", "model"}, f"{what}: unexpected keys {sorted(sc)}")
        expect(sc["name"] == name, f"{what}: name is {sc['name']!r}")
        expect(sc["project_id"] == project_id, f"{what}: project_id is {sc['project_id']!r}, want {project_id}")
        expect(sc["program"] == "python-mcp-sdk" and sc["model"] == f"mcp-{SDK_VERSION}", f"{what}: program/model not echoed: {sc!r}")
        expect(uuid.UUID(sc["id"]).version == 7, f"{what}: id {sc['id']!r} is not a UUIDv7")
        agents[name] = sc
    done.append("create_agent x2")

    # --- send_message -----------------------------------------------------------------------
    token = "pytok" + secrets.token_hex(8)
    subject = f"python sdk {SDK_VERSION}"
    body = f"hello from the python sdk, token {token}"
    what = "send_message"
    res = await api.call("send_message", {"from_agent": name_a, "to": [name_b], "subject": subject, "body": body})
    parsed, sc = ok_result(res, what)
    expect(parsed == sc, f"{what}: structuredContent {sc!r} differs from text JSON {parsed!r}")
    expect(set(sc) == {"id", "status", "thread_id"} and sc["status"] == "sent", f"{what}: want {{id, status:'sent', thread_id}}, got {sc!r}")
    msg_id = sc["id"]
    done.append("send_message")

    # --- get_inbox (one message) ------------------------------------------------------------
    what = "get_inbox(B)"
    res = await api.call("get_inbox", {"agent_name": name_b})
    parsed, sc = ok_result(res, what)
    expect(set(sc) == {"messages"}, f"{what}: structuredContent should be {{messages:[...]}}, got {sc!r}")
    expect(parsed == sc["messages"], f"{what}: structuredContent.messages {sc['messages']!r} differs from text JSON {parsed!r}")
    msgs = sc["messages"]
    expect(isinstance(msgs, list) and len(msgs) == 1, f"{what}: want exactly one message, got {msgs!r}")
    m = msgs[0]
    expect(set(m) == INBOX_KEYS, f"{what}: unexpected message keys {sorted(m)}")
    expect(m["id"] == msg_id, f"{what}: id {m['id']!r} != sent id {msg_id!r}")
    expect(m["from"] == name_a, f"{what}: from {m['from']!r} != {name_a!r}")
    expect(m["subject"] == subject, f"{what}: subject {m['subject']!r} != {subject!r}")
    expect(m["body"] == body, f"{what}: body {m['body']!r} != {body!r}")
    expect(isinstance(m["timestamp"], str) and m["timestamp"].endswith("Z"), f"{what}: timestamp {m['timestamp']!r}")
    done.append("get_inbox")

    # --- get_inbox again (drained) ----------------------------------------------------------
    what = "get_inbox(B) again"
    res = await api.call("get_inbox", {"agent_name": name_b})
    parsed, sc = ok_result(res, what)
    expect(sc == {"messages": []} and parsed == [], f"{what}: want empty inbox, got structuredContent {sc!r}, text {parsed!r}")
    done.append("get_inbox drained")

    # --- fetch_inbox (drained mail is still readable) -----------------------------------------
    what = "fetch_inbox(B)"
    res = await api.call("fetch_inbox", {"agent_name": name_b})
    parsed, sc = ok_result(res, what)
    expect(parsed == sc, f"{what}: structuredContent differs from text JSON")
    got = sc["messages"]
    expect(len(got) == 1 and got[0]["id"] == msg_id and got[0]["drained"] is True, f"{what}: want the drained message, got {got!r}")
    expect(sc["next_after"] == 1 and sc["counts"]["unread"] == 0, f"{what}: cursor and counts {sc!r}")
    done.append("fetch_inbox")

    # --- file reservations ------------------------------------------------------------------
    what = "file_reservation_paths(A)"
    res = await api.call("file_reservation_paths", {"agent_name": name_a, "paths": ["src/", "port:3000"]})
    parsed, sc = ok_result(res, what)
    expect(len(sc["granted"]) == 2 and sc["conflicts"] == [], f"{what}: {sc!r}")
    what = "file_reservation_paths(B), conflicting"
    res = await api.call("file_reservation_paths", {"agent_name": name_b, "paths": ["src/main.rs"]})
    parsed, sc = ok_result(res, what)
    expect(sc["granted"] == [] and sc["conflicts"][0]["holders"][0]["agent"] == name_a, f"{what}: {sc!r}")
    res = await api.call("release_file_reservations", {"agent_name": name_a})
    parsed, sc = ok_result(res, "release_file_reservations(A)")
    expect(len(sc["released"]) == 2, f"release_file_reservations(A): {sc!r}")
    done.append("file reservations")

    # --- search_messages (poll) -------------------------------------------------------------
    what = f"search_messages({token})"
    deadline = time.monotonic() + SEARCH_DEADLINE_S
    attempts = 0
    while True:
        attempts += 1
        res = await api.call("search_messages", {"query": token, "limit": 5})
        parsed, sc = ok_result(res, what)
        expect(set(sc) == {"results"}, f"{what}: structuredContent should be {{results:[...]}}, got {sc!r}")
        expect(parsed == sc["results"], f"{what}: structuredContent.results differs from text JSON: {sc['results']!r} vs {parsed!r}")
        expect(isinstance(parsed, list), f"{what}: text is not a JSON array: {parsed!r}")
        if parsed:
            break
        if time.monotonic() >= deadline:
            fail(f"{what}: message not found after {SEARCH_DEADLINE_S}s ({attempts} queries)")
        await anyio.sleep(0.05)
    for doc in parsed:
        expect(isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()), f"{what}: every field of a doc must be an array: {doc!r}")
    expect(len(parsed) == 1, f"{what}: want exactly one hit for a unique token, got {parsed!r}")
    doc = parsed[0]
    want = {"id": [msg_id], "from": [name_a], "to": [name_b], "subject": [subject], "body": [body], "project_id": [project_id]}
    for k, v in want.items():
        expect(doc.get(k) == v, f"{what}: field {k} is {doc.get(k)!r}, want {v!r}")
    expect(isinstance(doc.get("timestamp"), list) and len(doc["timestamp"]) == 1, f"{what}: timestamp {doc.get('timestamp')!r}")
    done.append(f"search_messages({attempts} polls)")

    # --- error cases ------------------------------------------------------------------------
    what = "send_message with to as a string"
    try:
        res = await api.call("send_message", {"from_agent": name_a, "to": name_b, "body": "x"})
    except Exception as e:  # noqa: BLE001
        fail(f"{what}: want a result with isError true, got exception {type(e).__name__}: {e}")
    error_result(res, what)
    done.append("error: to as string")

    what = "get_inbox of an unknown agent"
    try:
        res = await api.call("get_inbox", {"agent_name": f"NoSuchAgent_{suffix}"})
    except Exception as e:  # noqa: BLE001
        fail(f"{what}: want a result with isError true, got exception {type(e).__name__}: {e}")
    error_result(res, what)
    done.append("error: unknown agent")

    what = "unknown tool"
    try:
        res = await api.call(f"no_such_tool_{suffix}", {})
    except SdkRpcError as e:
        done.append(f"error: unknown tool ({type(e).__name__} {e.error.code})")
    else:
        expect(res.get("isError") is True, f"{what}: want a JSON-RPC error (or isError), got success {res!r}")
        done.append("error: unknown tool (isError)")

    return done


async def main_1x(url: str) -> list[str]:
    failure: CheckFailed | None = None
    done: list[str] = []
    async with _transport_1x(url) as (read, write, _get_session_id):
        async with ClientSession(read, write, client_info=mcp_types.Implementation(name="allman-python-check", version="1")) as session:
            init = await session.initialize()
            try:
                done = await run_checks(Api(session), wire(init.serverInfo), init.protocolVersion, SESSION_VERSIONS)
            except CheckFailed as e:
                failure = e
    if failure:
        raise failure
    return done


async def main_2x(url: str, mode: str) -> list[str]:
    failure: CheckFailed | None = None
    done: list[str] = []
    client_info = mcp_types.Implementation(name="allman-python-check", version="1")
    want = SESSION_VERSIONS if mode == "legacy" else ("2026-07-28",)
    async with Client(_transport_2x(url), client_info=client_info, mode=mode) as client:
        try:
            info = client.server_info
            done = await run_checks(Api(client), wire(info) if info else {}, client.protocol_version, want)
        except CheckFailed as e:
            failure = e
    if failure:
        raise failure
    return done


def unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> int:
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in ("legacy", "2026-07-28", "auto")):
        print("usage: python_client.py http://127.0.0.1:PORT/mcp [legacy|2026-07-28|auto]", file=sys.stderr)
        return 2
    url = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) == 3 else "auto"
    api = "streamablehttp_client + ClientSession" if SDK_MAJOR == 1 else f"streamable_http_client + Client, mode={mode}"
    label = f"python mcp {SDK_VERSION} ({api})"

    async def runner() -> list[str]:
        with anyio.fail_after(60):
            return await (main_1x(url) if SDK_MAJOR == 1 else main_2x(url, mode))

    try:
        done = anyio.run(runner)
    except BaseException as e:  # noqa: BLE001 - report anything, including SDK task-group errors
        e = unwrap(e)
        if isinstance(e, CheckFailed):
            print(f"FAIL {label}: {e}", file=sys.stderr)
        else:
            print(f"FAIL {label}: {type(e).__name__} raised by the SDK or transport: {e}", file=sys.stderr)
        return 1
    print(f"PASS {label}: {len(done)} checks: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
