#!/usr/bin/env node
// Issue 7: drive allman's /mcp with the official TypeScript SDK: 1.x
// (@modelcontextprotocol/sdk) or 2.x (@modelcontextprotocol/client), Client +
// StreamableHTTPClientTransport. Runs on Node 20+.
//
// Usage: node ts_client.mjs http://127.0.0.1:PORT/mcp [sdk1|legacy|2026-07-28|auto]
//
// `sdk1` (the default) is the 1.x SDK and the 2025 initialize lifecycle; the others are the 2.x
// SDK's versionNegotiation modes: `legacy` (initialize), `2026-07-28` (pinned: stateless,
// no handshake) and `auto` (server/discover first), which must then settle on 2026-07-28.
//
// listTools() runs before any callTool(), so the SDK validates every structuredContent against
// the tool's outputSchema (and refuses a result that has an outputSchema but no
// structuredContent). Any deviation exits 1 naming it; success prints one line starting PASS.

import { readFileSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';

const MODES = ['sdk1', 'legacy', '2026-07-28', 'auto'];
const MODE = process.argv[3] ?? 'sdk1';
if (!process.argv[2] || !MODES.includes(MODE)) {
  console.error(`usage: node ts_client.mjs http://127.0.0.1:PORT/mcp [${MODES.join('|')}]`);
  process.exit(2);
}
const SDK1 = MODE === 'sdk1';
const PACKAGE = SDK1 ? '@modelcontextprotocol/sdk' : '@modelcontextprotocol/client';
const { Client, StreamableHTTPClientTransport, RpcError } = SDK1
  ? {
      ...(await import('@modelcontextprotocol/sdk/client/index.js')),
      ...(await import('@modelcontextprotocol/sdk/client/streamableHttp.js')),
      RpcError: (await import('@modelcontextprotocol/sdk/types.js')).McpError,
    }
  : await import('@modelcontextprotocol/client').then((m) => ({ ...m, RpcError: m.ProtocolError }));
// The 2.x versionNegotiation option for each mode.
const NEGOTIATION = {
  legacy: { mode: 'legacy' },
  '2026-07-28': { mode: { pin: '2026-07-28' } },
  auto: { mode: 'auto' },
}[MODE];
const WANT_VERSIONS = MODE === '2026-07-28' || MODE === 'auto' ? ['2026-07-28'] : ['2025-11-25', '2025-06-18', '2025-03-26'];

// The package's exports map hides its package.json; read it beside this script.
const SDK_VERSION = JSON.parse(
  readFileSync(new URL(`./node_modules/${PACKAGE}/package.json`, import.meta.url), 'utf8')
).version;
const EXPECTED_TOOLS = [
  'acknowledge_message', 'check_file_reservation_conflicts', 'create_agent', 'fetch_inbox',
  'file_reservation_paths', 'force_release_file_reservation', 'get_inbox', 'get_thread',
  'list_agents', 'list_file_reservations', 'mark_message_read', 'release_file_reservations',
  'renew_file_reservations', 'reply_message', 'search_messages', 'send_message', 'wait_for_mail',
];
const INBOX_KEYS = ['id', 'from', 'subject', 'body', 'timestamp', 'seq', 'thread_id', 'reply_to', 'importance', 'ack_required', 'cc'];
const PROJECT_KEY = 'ts-sdk';
const SEARCH_DEADLINE_MS = 5000;
const LABEL = `typescript ${PACKAGE} ${SDK_VERSION} (Client + StreamableHTTPClientTransport${SDK1 ? '' : `, ${MODE}`})`;

class CheckFailed extends Error {}
const fail = (msg) => {
  throw new CheckFailed(msg);
};
const expect = (cond, msg) => {
  if (!cond) fail(msg);
};
const show = (v) => JSON.stringify(v);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// UUIDv5(NAMESPACE_DNS, name), as allman derives project_id.
function uuidv5Dns(name) {
  const ns = Buffer.from('6ba7b8109dad11d180b400c04fd430c8', 'hex');
  const h = createHash('sha1').update(Buffer.concat([ns, Buffer.from(name, 'utf8')])).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function textOf(result, what) {
  const content = result.content;
  expect(Array.isArray(content) && content.length === 1, `${what}: expected exactly one content block, got ${show(content)}`);
  expect(content[0].type === 'text' && typeof content[0].text === 'string', `${what}: content[0] is not text: ${show(content[0])}`);
  return content[0].text;
}

function okResult(result, what) {
  expect(result.isError === false || result.isError === undefined, `${what}: isError is ${show(result.isError)}: ${show(result)}`);
  const text = textOf(result, what);
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(`${what}: text content is not JSON (${e.message}): ${show(text)}`);
  }
  expect('structuredContent' in result, `${what}: structuredContent missing: ${show(result)}`);
  const sc = result.structuredContent;
  expect(sc !== null && typeof sc === 'object' && !Array.isArray(sc), `${what}: structuredContent is not an object: ${show(sc)}`);
  return [parsed, sc];
}

function errorResult(result, what) {
  expect(result.isError === true, `${what}: expected isError true, got ${show(result)}`);
  const text = textOf(result, what);
  expect(text.trim() !== '', `${what}: error result has an empty message`);
  return text;
}

const sameKeys = (obj, keys) => isDeepStrictEqual(Object.keys(obj).sort(), [...keys].sort());

async function runChecks(client) {
  const done = [];

  // --- initialize (2025) or server/discover (2026-07-28) -------------------------------------
  const info = client.getServerVersion();
  expect(info?.name === 'allman', `connect: serverInfo.name is ${show(info?.name)}, want "allman"`);
  expect(client.getServerCapabilities()?.tools !== undefined, `connect: capabilities.tools missing: ${show(client.getServerCapabilities())}`);
  const version = SDK1 ? client.transport?.protocolVersion : client.getNegotiatedProtocolVersion();
  if (!SDK1 || version !== undefined) {
    expect(WANT_VERSIONS.includes(version), `connect: negotiated protocol version ${show(version)}, want one of ${show(WANT_VERSIONS)}`);
  }
  done.push(`connect(${version ?? 'initialize'})`);

  // --- tools/list ---------------------------------------------------------------------------
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  expect(isDeepStrictEqual(names, EXPECTED_TOOLS), `tools/list: got ${show(names)}, want exactly ${show(EXPECTED_TOOLS)}`);
  for (const t of tools) {
    for (const key of ['inputSchema', 'outputSchema']) {
      expect(t[key] && t[key].type === 'object', `tools/list: ${t.name}.${key} missing or not an object schema: ${show(t[key])}`);
    }
  }
  done.push('tools/list');

  const suffix = randomBytes(4).toString('hex');
  const nameA = `TsA_${suffix}`;
  const nameB = `TsB_${suffix}`;
  const projectId = uuidv5Dns(PROJECT_KEY);
  const call = (name, args) => client.callTool({ name, arguments: args });

  // --- create_agent x2 ----------------------------------------------------------------------
  for (const name of [nameA, nameB]) {
    const what = `create_agent(${name})`;
    const res = await call('create_agent', { project_key: PROJECT_KEY, name_hint: name, program: 'ts-mcp-sdk', model: `sdk-${SDK_VERSION}` });
    const [parsed, sc] = okResult(res, what);
    expect(isDeepStrictEqual(parsed, sc), `${what}: structuredContent ${show(sc)} differs from text JSON ${show(parsed)}`);
    expect(sameKeys(sc, ['id', 'project_id', 'name', 'program', 'model']), `${what}: unexpected keys ${show(Object.keys(sc))}`);
    expect(sc.name === name, `${what}: name is ${show(sc.name)}`);
    expect(sc.project_id === projectId, `${what}: project_id is ${show(sc.project_id)}, want ${projectId}`);
    expect(sc.program === 'ts-mcp-sdk' && sc.model === `sdk-${SDK_VERSION}`, `${what}: program/model not echoed: ${show(sc)}`);
    expect(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(sc.id), `${what}: id ${show(sc.id)} is not a UUIDv7`);
  }
  done.push('create_agent x2');

  // --- send_message -------------------------------------------------------------------------
  const token = `tstok${randomBytes(8).toString('hex')}`;
  const subject = `typescript sdk ${SDK_VERSION}`;
  const body = `hello from the typescript sdk, token ${token}`;
  let what = 'send_message';
  let res = await call('send_message', { from_agent: nameA, to: [nameB], subject, body });
  let [parsed, sc] = okResult(res, what);
  expect(isDeepStrictEqual(parsed, sc), `${what}: structuredContent ${show(sc)} differs from text JSON ${show(parsed)}`);
  expect(sameKeys(sc, ['id', 'status', 'thread_id']) && sc.status === 'sent', `${what}: want {id, status:"sent", thread_id}, got ${show(sc)}`);
  const msgId = sc.id;
  done.push('send_message');

  // --- get_inbox (one message) --------------------------------------------------------------
  what = 'get_inbox(B)';
  res = await call('get_inbox', { agent_name: nameB });
  [parsed, sc] = okResult(res, what);
  expect(sameKeys(sc, ['messages']), `${what}: structuredContent should be {messages:[...]}, got ${show(sc)}`);
  expect(isDeepStrictEqual(parsed, sc.messages), `${what}: structuredContent.messages ${show(sc.messages)} differs from text JSON ${show(parsed)}`);
  expect(Array.isArray(sc.messages) && sc.messages.length === 1, `${what}: want exactly one message, got ${show(sc.messages)}`);
  const m = sc.messages[0];
  expect(sameKeys(m, INBOX_KEYS), `${what}: unexpected message keys ${show(Object.keys(m))}`);
  expect(m.id === msgId, `${what}: id ${show(m.id)} != sent id ${show(msgId)}`);
  expect(m.from === nameA, `${what}: from ${show(m.from)} != ${show(nameA)}`);
  expect(m.subject === subject, `${what}: subject ${show(m.subject)} != ${show(subject)}`);
  expect(m.body === body, `${what}: body ${show(m.body)} != ${show(body)}`);
  expect(typeof m.timestamp === 'string' && m.timestamp.endsWith('Z'), `${what}: timestamp ${show(m.timestamp)}`);
  done.push('get_inbox');

  // --- get_inbox again (drained) ------------------------------------------------------------
  what = 'get_inbox(B) again';
  res = await call('get_inbox', { agent_name: nameB });
  [parsed, sc] = okResult(res, what);
  expect(isDeepStrictEqual(sc, { messages: [] }) && isDeepStrictEqual(parsed, []), `${what}: want empty inbox, got structuredContent ${show(sc)}, text ${show(parsed)}`);
  done.push('get_inbox drained');

  // --- fetch_inbox (drained mail is still readable) -------------------------------------------
  what = 'fetch_inbox(B)';
  res = await call('fetch_inbox', { agent_name: nameB });
  [parsed, sc] = okResult(res, what);
  expect(isDeepStrictEqual(parsed, sc), `${what}: structuredContent differs from text JSON`);
  expect(sc.messages.length === 1 && sc.messages[0].id === msgId && sc.messages[0].drained === true,
    `${what}: want the drained message, got ${show(sc.messages)}`);
  expect(sc.next_after === 1 && sc.counts.unread === 0, `${what}: cursor and counts ${show(sc)}`);
  done.push('fetch_inbox');

  // --- file reservations ----------------------------------------------------------------------
  what = 'file_reservation_paths(A)';
  res = await call('file_reservation_paths', { agent_name: nameA, paths: ['src/', 'port:3000'] });
  [parsed, sc] = okResult(res, what);
  expect(sc.granted.length === 2 && sc.conflicts.length === 0, `${what}: ${show(sc)}`);
  what = 'file_reservation_paths(B), conflicting';
  res = await call('file_reservation_paths', { agent_name: nameB, paths: ['src/main.rs'] });
  [parsed, sc] = okResult(res, what);
  expect(sc.granted.length === 0 && sc.conflicts[0].holders[0].agent === nameA, `${what}: ${show(sc)}`);
  res = await call('release_file_reservations', { agent_name: nameA });
  [parsed, sc] = okResult(res, 'release_file_reservations(A)');
  expect(sc.released.length === 2, `release_file_reservations(A): ${show(sc)}`);
  done.push('file reservations');

  // --- search_messages (poll) ---------------------------------------------------------------
  what = `search_messages(${token})`;
  const deadline = Date.now() + SEARCH_DEADLINE_MS;
  let attempts = 0;
  for (;;) {
    attempts++;
    res = await call('search_messages', { query: token, limit: 5 });
    [parsed, sc] = okResult(res, what);
    expect(sameKeys(sc, ['results']), `${what}: structuredContent should be {results:[...]}, got ${show(sc)}`);
    expect(isDeepStrictEqual(parsed, sc.results), `${what}: structuredContent.results differs from text JSON: ${show(sc.results)} vs ${show(parsed)}`);
    expect(Array.isArray(parsed), `${what}: text is not a JSON array: ${show(parsed)}`);
    if (parsed.length > 0) break;
    if (Date.now() >= deadline) fail(`${what}: message not found after ${SEARCH_DEADLINE_MS} ms (${attempts} queries)`);
    await sleep(50);
  }
  for (const doc of parsed) {
    expect(doc && typeof doc === 'object' && Object.values(doc).every(Array.isArray), `${what}: every field of a doc must be an array: ${show(doc)}`);
  }
  expect(parsed.length === 1, `${what}: want exactly one hit for a unique token, got ${show(parsed)}`);
  const doc = parsed[0];
  const want = { id: [msgId], from: [nameA], to: [nameB], subject: [subject], body: [body], project_id: [projectId] };
  for (const [k, v] of Object.entries(want)) {
    expect(isDeepStrictEqual(doc[k], v), `${what}: field ${k} is ${show(doc[k])}, want ${show(v)}`);
  }
  expect(Array.isArray(doc.timestamp) && doc.timestamp.length === 1, `${what}: timestamp ${show(doc.timestamp)}`);
  done.push(`search_messages(${attempts} polls)`);

  // --- error cases --------------------------------------------------------------------------
  what = 'send_message with to as a string';
  try {
    res = await call('send_message', { from_agent: nameA, to: nameB, body: 'x' });
  } catch (e) {
    fail(`${what}: want a result with isError true, got exception ${e?.constructor?.name}: ${e?.message}`);
  }
  errorResult(res, what);
  done.push('error: to as string');

  what = 'get_inbox of an unknown agent';
  try {
    res = await call('get_inbox', { agent_name: `NoSuchAgent_${suffix}` });
  } catch (e) {
    fail(`${what}: want a result with isError true, got exception ${e?.constructor?.name}: ${e?.message}`);
  }
  errorResult(res, what);
  done.push('error: unknown agent');

  what = 'unknown tool';
  let threw = null;
  try {
    res = await call(`no_such_tool_${suffix}`, {});
  } catch (e) {
    threw = e;
  }
  if (threw) {
    expect(threw instanceof RpcError, `${what}: want a JSON-RPC error, got ${threw?.constructor?.name}: ${threw?.message}`);
    done.push(`error: unknown tool (JSON-RPC error ${threw.code})`);
  } else {
    expect(res.isError === true, `${what}: want a JSON-RPC error (or isError), got success ${show(res)}`);
    done.push('error: unknown tool (isError)');
  }

  return done;
}

async function main() {
  const url = process.argv[2];
  const options = SDK1 ? { capabilities: {} } : { capabilities: {}, versionNegotiation: NEGOTIATION };
  const client = new Client({ name: 'allman-ts-check', version: '1' }, options);
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const timer = setTimeout(() => {
    console.error(`FAIL ${LABEL}: timed out after 60 s`);
    process.exit(1);
  }, 60000);
  let done;
  try {
    await client.connect(transport);
    done = await runChecks(client);
  } catch (e) {
    const msg = e instanceof CheckFailed ? e.message : `${e?.constructor?.name} raised by the SDK or transport: ${e?.message ?? e}`;
    console.error(`FAIL ${LABEL}: ${msg}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    await client.close().catch(() => {});
  }
  if (done) console.log(`PASS ${LABEL}: ${done.length} checks: ${done.join(', ')}`);
}

await main();
