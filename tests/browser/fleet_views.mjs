// The servers page of a fleet in a real browser: log in as a Backup Contributor, see the
// servers grouped by host with each host's agent, pick the host of a restore in the
// wizard and check it there, register a VM (a one-time token and the exact command to run
// there), revoke an agent after confirming, and see the dashboard's fleet totals.
//
// Run by tests/browser/test_fleet_browser.py, which starts a control plane with an agent
// owning a server and a server of its own host. Environment: DBSAFE_URL, DBSAFE_USER,
// DBSAFE_PASSWORD, AGENT_ID (the agent of host-a), ARTEFACTS (screenshots),
// PLAYWRIGHT_CORE. "@@result KEY VALUE" lines hand results back to pytest; anything else
// on stdout is a log line.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DBSAFE_URL;
const agentId = process.env.AGENT_ID;
const artefacts = process.env.ARTEFACTS;
const result = (key, value) => console.log(`@@result ${key} ${JSON.stringify(value)}`);

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  const file = path.join(artefacts, `fleet-${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

// {host: [server names]} as the page groups them
async function groups(page) {
  return page.$$eval("section.host", (sections) => Object.fromEntries(sections.map((s) => [
    s.dataset.host,
    [...s.querySelectorAll("tbody tr td:first-child a")].map((a) => a.textContent.trim()),
  ])));
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => { console.log(`page error: ${err.message}`); process.exitCode = 1; });
  const dialogs = [];
  page.on("dialog", async (dialog) => { dialogs.push(dialog.message()); await dialog.accept(); });

  await page.goto(`${url}/login`);
  await page.fill("input[name=name]", process.env.DBSAFE_USER);
  await page.fill("input[name=password]", process.env.DBSAFE_PASSWORD);
  await Promise.all([page.waitForURL(`${url}/`), page.click("form[action='/login'] button")]);
  await screenshot(page, "dashboard");
  result("dashboard_hosts", (await page.textContent("#fleet-hosts")).trim());
  result("dashboard_per_host", await page.$$eval("table.per-host tbody tr",
    (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim()))));

  // the servers, by host, with the agent's facts
  await page.click("header nav a[href='/servers']");
  await page.waitForURL(`${url}/servers`);
  await screenshot(page, "servers-by-host");
  result("groups", await groups(page));
  result("agent_facts", (await page.textContent(`section.host[data-host='host-a'] .agent`))
    .replace(/\s+/g, " ").trim());

  // the restore wizard: target servers by host; the host field shows for a data directory
  // and for files, not for a database into a server; the checks run on the chosen host
  await page.goto(`${url}/servers/db1/restore`);
  result("wizard_groups", await page.$$eval("select[name=target_server] optgroup",
    (groups) => groups.map((g) => [g.label, [...g.querySelectorAll("option")].map((o) => o.textContent)])));
  const hostShown = async () => page.isVisible("#restore-host");
  const shown = { server: await hostShown() };
  await page.check("input[name=target][value=files]");
  shown.files = await hostShown();
  await page.check("input[name=target][value=pgdata]");
  shown.pgdata = await hostShown();
  result("host_shown", shown);
  result("host_options", await page.$$eval("#restore-host option",
    (options) => options.map((o) => [o.value, o.textContent.trim()])));
  await page.selectOption("#restore-host", agentId);
  await page.fill("input[name=time]", "2026-01-01T00:00:00Z");
  await page.fill("input[name=path]", "/var/tmp/dbsafe-wizard-never/copy");
  await Promise.all([page.waitForLoadState("load"), page.click("button[value=check]")]);
  await screenshot(page, "wizard-checked-on-host-a");
  result("checked_on", (await page.textContent("#checked-on")).trim());
  result("checks", await page.$$eval("#checks li strong", (s) => s.map((e) => e.textContent)));
  await page.goto(`${url}/servers`);

  // register a VM: the form is behind "Register a VM"; the answer shows the command
  await page.click("details.register-vm summary");
  await page.fill("#register-vm input[name=host]", "host-c");
  await page.fill("#register-vm input[name=expires]", "30");
  await Promise.all([page.waitForLoadState("load"), page.click("#register-vm button[type=submit]")]);
  await screenshot(page, "registered");
  result("command", (await page.textContent("#register-command")).trim());

  // revoke host-a's agent: the page asks first
  await Promise.all([
    page.waitForLoadState("load"),
    page.click(`section.host[data-host='host-a'] form[action='/agents/${agentId}/revoke'] button`),
  ]);
  await screenshot(page, "revoked");
  result("dialogs", dialogs);
  result("state_after", (await page.textContent("section.host[data-host='host-a'] .agent-state")).trim());
} finally {
  await browser.close();
}
