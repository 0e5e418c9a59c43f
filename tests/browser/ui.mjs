// Issue 17: allman's web view in a real browser. Seeds a running server through /mcp (agents,
// a thread with replies, a named thread, acknowledgements, a drain, file reservations, and a
// message whose body is markup), then loads every page in the distribution's headless
// Chromium (driven by playwright-core, which downloads nothing) and checks that the pages
// show the expected names and counts, that links lead where they say, that no script from
// message text runs, and that the console stays clean. Saves a screenshot of each page.
//
//   node ui.mjs http://127.0.0.1:PORT SCREENSHOT_DIR
//
// Ends with "N passed, M failed" and exits non-zero on any failure.
import { chromium } from "playwright-core";
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node ui.mjs http://127.0.0.1:PORT SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>";

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed += 1;
    console.log(`PASS  ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL  ${name}${detail ? `  (${detail})` : ""}`);
  }
}

let rpcId = 0;
async function call(tool, args) {
  rpcId += 1;
  const response = await fetch(`${base}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: rpcId, method: "tools/call", params: { name: tool, arguments: args } }),
  });
  const reply = await response.json();
  if (!reply.result || reply.result.isError) {
    throw new Error(`${tool} failed: ${JSON.stringify(reply)}`);
  }
  return reply.result.structuredContent;
}

/** project_id = UUID v5 (DNS namespace) of the key, as the server computes it. */
function projectId(key) {
  const ns = Buffer.from("6ba7b8109dad11d180b400c04fd430c8", "hex");
  const hash = createHash("sha1").update(ns).update(key).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// --- seed -------------------------------------------------------------------------------------
// A suffix keeps reruns against one server apart; UI_RUN_ID="" gives plain names (screenshots).
const run = process.env.UI_RUN_ID ?? randomUUID().slice(0, 6);
const key = `/home/dev/storefront${run ? `-${run}` : ""}`;
const project = projectId(key);
const agents = {
  lead: `BlueLake${run}`,
  api: `GreenCastle${run}`,
  web: `RedFox${run}`,
  qa: `AmberOwl${run}`,
};
await call("create_agent", { project_key: key, name_hint: agents.lead, program: "claude-code", model: "opus-4", task_description: "Coordinates the checkout rewrite" });
await call("create_agent", { project_key: key, name_hint: agents.api, program: "codex", model: "gpt-5", task_description: "Payments API" });
await call("create_agent", { project_key: key, name_hint: agents.web, program: "gemini-cli", model: "2.5-pro", task_description: "Checkout UI" });
await call("create_agent", { project_key: key, name_hint: agents.qa, program: "claude-code", model: "sonnet-4", task_description: "End-to-end tests" });
const plan = await call("send_message", {
  from_agent: agents.lead,
  to: [agents.api, agents.web],
  cc: [agents.qa],
  subject: "Checkout rewrite: plan",
  body: "API first, then the UI. Reserve your paths before editing.",
  ack_required: true,
  importance: "high",
});
await call("reply_message", { from_agent: agents.api, message_id: plan.id, body: "Taking src/payments/**. ETA two hours." });
await call("reply_message", { from_agent: agents.web, message_id: plan.id, body: "Taking web/checkout/**." });
const xss = await call("send_message", { from_agent: agents.web, to: [agents.lead], subject: "Pasted from the logs", body: XSS });
await call("send_message", { from_agent: agents.qa, to: [agents.lead, agents.api], subject: "Flaky test on CI", body: "checkout.spec fails 1 in 20.", thread_id: "ci-flakes", importance: "urgent" });
await call("acknowledge_message", { agent_name: agents.api, message_ids: [plan.id] });
await call("get_inbox", { agent_name: agents.web });
await call("file_reservation_paths", { project_key: key, agent_name: agents.api, paths: ["src/payments/**"], reason: "payments API rewrite" });
await call("file_reservation_paths", { project_key: key, agent_name: agents.web, paths: ["web/checkout/**", "web/shared/*.css"], exclusive: false, reason: "checkout UI" });

// --- browse -----------------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const problems = [];
page.on("console", (message) => {
  if (message.type() === "error" || message.type() === "warning") problems.push(`console ${message.type()}: ${message.text()}`);
});
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("dialog", async (dialog) => {
  problems.push(`a dialog opened: ${dialog.message()}`);
  await dialog.dismiss();
});

async function visit(name, path, checks) {
  problems.length = 0;
  const response = await page.goto(`${base}${path}`, { waitUntil: "load" });
  check(`${name}: HTTP 200`, response && response.status() === 200, response ? String(response.status()) : "no response");
  const text = await page.locator("main").innerText();
  for (const [label, ok] of checks(text)) {
    check(`${name}: ${label}`, ok, ok ? "" : text.slice(0, 600).replaceAll("\n", " | "));
  }
  // The page's script ran (under the CSP): times are shown in local time, not "UTC".
  const times = await page.locator("main time").allInnerTexts();
  check(`${name}: local times`, times.every((t) => !t.endsWith(" UTC")), times.slice(0, 2).join(" | "));
  check(`${name}: no markup from message text became elements`, (await page.locator("img[src='x']").count()) === 0);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  check(`${name}: console clean, no dialogs`, problems.length === 0, problems.join("; "));
}

const row = (text, name) => text.split("\n").find((line) => line.startsWith(name)) || "";

await visit("overview", "/ui/", (text) => [
  ["lists the project", text.includes(key)],
  // Queued: the plan to three (one drained since), two replies, the markup one, the flake to two.
  ["agents, queued and sent counts", /\t4\t7\t5\t/.test(row(text, key) + "\t")],
]);
await visit("roster", `/ui/p/${project}`, (text) => [
  ["names every agent", Object.values(agents).every((a) => text.includes(a))],
  ["program, model and task", row(text, agents.api).includes("codex\tgpt-5\tPayments API")],
  ["queued, unread and awaiting-ack counts", row(text, agents.api).endsWith("\t2\t1\t0")],
  ["recent messages", text.includes("Checkout rewrite: plan") && text.includes("Flaky test on CI")],
  ["file reservations", text.includes("src/payments/**") && text.includes("web/shared/*.css") && text.includes("payments API rewrite")],
]);
await page.screenshot({ path: join(shots, "roster.png"), fullPage: true });

// Links: from the roster to an agent, to a message, to its thread.
await page.click(`main table.agents a:text-is("${agents.lead}")`);
check("link roster → agent", page.url().endsWith(`/ui/p/${project}/a/${agents.lead}`), page.url());
await visit("agent", `/ui/p/${project}/a/${agents.lead}`, (text) => [
  ["profile", text.includes("Coordinates the checkout rewrite") && text.includes("opus-4")],
  ["delivery log", text.includes("Pasted from the logs") && text.includes("Flaky test on CI")],
  ["delivery states", text.includes("unread")],
  ["threads", text.includes("ci-flakes") && text.includes(plan.thread_id)],
]);
await page.click(`main table.mail a:text-is("Pasted from the logs")`);
check("link agent → message", page.url().includes(`/ui/m/${xss.id}`), page.url());
await visit("message", `/ui/m/${xss.id}?from=${agents.web}`, (text) => [
  ["shows the markup as text", text.includes(XSS)],
  ["recipient and state", text.includes(agents.lead) && text.includes("unread")],
]);

// Search is eventually consistent: wait until the replies are indexed.
for (let tries = 0; tries < 100; tries += 1) {
  const response = await fetch(`${base}/ui/p/${project}/t/${plan.thread_id}`);
  if ((await response.text()).split("<article").length - 1 === 3) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
await visit("thread", `/ui/p/${project}/t/${plan.thread_id}`, (text) => [
  ["three messages, oldest first", text.indexOf("API first") >= 0 && text.indexOf("API first") < text.indexOf("Taking src/payments") && text.indexOf("Taking src/payments") < text.indexOf("Taking web/checkout")],
  ["who sent to whom", text.includes(`${agents.api} → ${agents.lead}`)],
]);
await page.click(`main article h3 a`, { strict: false }).catch(() => page.locator("main article h3 a").first().click());
check("link thread → message", page.url().includes("/ui/m/"), page.url());
await page.goto(`${base}/ui/p/${project}/a/${agents.api}`);
await page.locator(`main table.threads a:text-is("ci-flakes")`).click();
check("link agent → named thread", page.url().endsWith(`/t/ci-flakes`), page.url());

await page.goto(`${base}/ui/`);
await page.fill("header input[name=q]", "checkout");
await page.press("header input[name=q]", "Enter");
await page.waitForURL(/\/ui\/search\?q=checkout/);
await visit("search", "/ui/search?q=checkout", (text) => [
  ["finds the messages", text.includes("Checkout rewrite: plan") && text.includes("Flaky test on CI")],
]);
await visit("search-markup", `/ui/search?q=${encodeURIComponent("alert")}`, (text) => [
  ["finds the markup message, as text", text.includes("Pasted from the logs")],
]);

// A phone-sized screen.
const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
const small = await phone.newPage();
await small.goto(`${base}/ui/p/${project}`);
const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
check("roster on a phone: no sideways scrolling", overflow <= 1, `${overflow}px wider`);
await small.screenshot({ path: join(shots, "roster-phone.png"), fullPage: true });

// The auto-refresh toggle reloads a feed page.
await page.goto(`${base}/ui/p/${project}`);
await page.check("#auto-refresh");
const reloaded = await page.waitForEvent("load", { timeout: 8000 }).then(() => true, () => false);
check("auto-refresh reloads the page", reloaded);
check("auto-refresh stays on after the reload", await page.isChecked("#auto-refresh"));
await page.uncheck("#auto-refresh");

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
