// The portal's day-one tasks in a real browser, each with the least role the portal lets do
// it: a Backup Operator adds the server, protects a database, moves it to another policy,
// backs the instance up, verifies, runs a restore drill and undeletes a point; a Backup
// Contributor registers a VM, creates the policy, deletes the point, changes the vault's
// settings (region, soft delete, immutability), adds, tests and removes an alert channel,
// creates and revokes an API token, adds and removes a user, and reads the audit log. Then
// a Backup Reader visits the same pages (no action form, no task's button) and posts the
// tasks' forms with its session's CSRF token anyway (refused).
//
// Run by tests/browser/test_portal_tasks_browser.py, which prepares the vault, the cluster,
// the users and `dbsafe serve`, and checks each task's effect through the CLI. Environment:
// DBSAFE_URL, USERS (JSON {"contributor": [name, password], "operator": ..., "reader":
// ...}), PG_DATA and PG_PORT (the cluster to add), DATABASE, POLICY (the name of the policy
// to create), HOOK_URL (a webhook receiver), NEW_USER and NEW_USER_PASSWORD (the user to
// add), ARTEFACTS (screenshots), PLAYWRIGHT_CORE.
//
// Talking to pytest, as restore_flow.mjs does: "@@result KEY JSON" lines hand results back;
// "@@step NAME" asks pytest to check what the task did (through the CLI), and the script
// goes on when pytest answers "ok" on stdin. Anything else on stdout is a log line.

import { createRequire } from "node:module";

import { hangUp, jobEnd, screenshots, step } from "./pytest_talk.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DBSAFE_URL;
const users = JSON.parse(process.env.USERS);
const database = process.env.DATABASE;
const policy = process.env.POLICY;
const SERVER = "src";
const JOB_SECONDS = 300;

const result = (key, value) => console.log(`@@result ${key} ${JSON.stringify(value)}`);
const screenshot = screenshots(process.env.ARTEFACTS);

// A page of the portal; fails on anything but 200.
async function visit(page, where) {
  const response = await page.goto(`${url}${where}`, { waitUntil: "load" });
  if (response.status() !== 200) throw new Error(`GET ${where}: HTTP ${response.status()}`);
}

// Click a form's button and wait for the page it leads to (after a redirect, the page
// redirected to); its status.
async function submit(page, selector) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: "load" }),
                                        page.click(selector)]);
  return response.status();
}

// What a page says beside a form, by selector; "" when absent.
async function said(page, selector) {
  const found = page.locator(selector);
  return (await found.count()) ? (await found.first().textContent()).replace(/\s+/g, " ").trim() : "";
}

async function refusalsOn(page) {
  const errors = await page.locator("main .error, main [role=alert].error").allTextContents();
  return errors.map((e) => e.replace(/\s+/g, " ").trim()).filter(Boolean);
}

// Fails when the page shows a refusal where the task should have been done.
async function noRefusal(page, task) {
  const errors = await refusalsOn(page);
  if (errors.length) throw new Error(`${task} was refused: ${errors.join(" | ")}`);
}

// A job started by a form: its page, followed until the job ends (polling the API with the
// session), then the page itself shows the end (it follows the job's events and reloads).
async function followJob(page, name) {
  await screenshot(page, `${name}-job-started`);
  const { jobId, job } = await jobEnd(page, url, name, JOB_SECONDS, 250);
  // the page's own reload once the job ended: the section is no longer active
  await page.locator("#job[data-active=false] #job-state").waitFor({ timeout: 30_000 });
  const shown = (await page.textContent("#job-state")).trim();
  await screenshot(page, `${name}-job-ended`);
  if (job.state !== "completed") {
    throw new Error(`${name} job ${jobId} ended ${job.state}: ${job.error_code} ${job.error_message}`);
  }
  result(`job_${name}`, { id: jobId, shown, point_id: job.result?.point_id ?? null });
  return job;
}

async function login(browser, role) {
  const [name, password] = users[role];
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => { console.log(`page error (${role}): ${err.message}`); process.exitCode = 1; });
  const dialogs = [];
  page.on("dialog", async (dialog) => { dialogs.push(dialog.message()); await dialog.accept(); });
  await page.goto(`${url}/`);
  await page.waitForURL(/\/login/);
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(`${url}/`), page.click("form[action='/login'] button")]);
  const who = (await page.textContent("form.who span")).trim();
  if (who !== `user:${name} · ${role}`) throw new Error(`logged in as ${who}, not user:${name} · ${role}`);
  return { page, dialogs };
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  const operator = await login(browser, "operator");
  const contributor = await login(browser, "contributor");
  const op = operator.page;
  const co = contributor.page;
  await screenshot(op, "dashboard-operator");

  // 1. add a server (operator): the form behind "Add a server"
  await visit(op, "/servers");
  await op.click("details.add-server summary");
  await op.fill("#add-server input[name=name]", SERVER);
  await op.fill("#add-server input[name=pgdata]", process.env.PG_DATA);
  await op.fill("#add-server input[name=port]", process.env.PG_PORT);
  await screenshot(op, "add-server-filled");
  if (await submit(op, "#add-server button[type=submit]") !== 200) throw new Error("adding the server failed");
  await screenshot(op, "server-added");
  await noRefusal(op, "adding the server");
  result("server_added", await said(op, "#server-added"));
  await step("server-added");

  //    register a VM (contributor): a one-time token and the command that uses it
  await visit(co, "/servers");
  await co.click("details.register-vm summary");
  await co.fill("#register-vm input[name=host]", "vm1");
  await co.fill("#register-vm input[name=expires]", "30");
  if (await submit(co, "#register-vm button[type=submit]") !== 200) throw new Error("registering a VM failed");
  await noRefusal(co, "registering a VM");
  await screenshot(co, "vm-registered");
  result("registration", {
    text: await said(co, "section.registration p.ok"),
    command: (await co.textContent("#register-command")).trim(),
  });
  await step("vm-registered");

  // 2. create a policy (contributor), through the form under the list
  await visit(co, "/policies");
  const form = "form.policy-form";
  await co.fill(`${form} input[name=name]`, policy);
  await co.selectOption(`${form} select[name=full]`, "weekly");
  await co.fill(`${form} input[name=full_time]`, "02:30");
  await co.fill(`${form} input[name=timezone]`, "Europe/Berlin");
  await co.check(`${form} input[name=full_days][value=sun]`);
  await co.check(`${form} input[name=diff_days][value=wed]`);
  await co.selectOption(`${form} select[name=log_every]`, "");
  await co.fill(`${form} input[name=keep_daily]`, "");
  await co.fill(`${form} input[name=keep_weekly]`, "12");
  await co.fill(`${form} input[name=keep_diff]`, "14");
  await co.fill(`${form} input[name=keep_log]`, "");
  await co.fill(`${form} input[name=compression_level]`, "3");
  await co.uncheck(`${form} input[name=synthetic_full]`);
  await screenshot(co, "policy-filled");
  if (await submit(co, `${form} button[type=submit]`) !== 200) throw new Error("creating the policy failed");
  await noRefusal(co, "creating the policy");
  if (new URL(co.url()).pathname !== `/policies/${policy}`) throw new Error(`after creating: ${co.url()}`);
  await screenshot(co, "policy-created");
  await step("policy-created");

  //    protect the database (operator), with no policy first: the simple model
  await visit(op, `/servers/${SERVER}`);
  await op.check(`#protect-form input[name=db][value='${database}']`);
  await op.selectOption("#protect-form select[name=policy]", "-");
  if (await submit(op, "#protect-form button[value=selected]") !== 200) throw new Error("protecting failed");
  await noRefusal(op, "protecting the database");
  await screenshot(op, "protected");
  result("protected", await said(op, "section.outcome p.ok"));
  await step("protected");

  //    then move the instance's protected databases to the new policy (operator)
  await op.selectOption("#policy-form select[name=policy]", policy);
  if (await submit(op, "#policy-form button[type=submit]") !== 200) throw new Error("changing the policy failed");
  await noRefusal(op, "changing the policy");
  await screenshot(op, "policy-changed");
  result("policy_changed", await said(op, "section.outcome p.ok"));
  await step("policy-changed");

  // 3. an instance backup (operator), followed to its end on the job page; verify; a drill
  await visit(op, `/servers/${SERVER}`);
  await op.selectOption("#server-backup select[name=type]", "full");
  await submit(op, "#server-backup button[type=submit]");
  const backup = await followJob(op, "backup");
  const point = backup.result.point_id;
  await step("backed-up");

  await visit(op, `/servers/${SERVER}`);
  await submit(op, "#server-verify button[type=submit]");
  await followJob(op, "verify");
  await step("verified");

  await visit(op, `/servers/${SERVER}`);
  await submit(op, "#server-drill button[type=submit]");
  await followJob(op, "drill");
  await step("drilled");

  // 4. delete the point (contributor: after a confirmation), undelete it (operator)
  const dbPage = `/servers/${SERVER}/databases/${database}`;
  await visit(co, dbPage);
  await screenshot(co, "database");
  await submit(co, `#backups form[action$='/points/${point}/delete'] button`);
  await noRefusal(co, "deleting the point");
  await screenshot(co, "point-deleted");
  result("deleted", { done: await said(co, "#points-done"),
                      listed: await said(co, "#deleted"), dialogs: contributor.dialogs.splice(0) });
  await step("point-deleted");

  await visit(op, dbPage);
  await submit(op, `#deleted form[action$='/points/${point}/undelete'] button`);
  await noRefusal(op, "undeleting the point");
  await screenshot(op, "point-undeleted");
  result("undeleted", await said(op, "#points-done"));
  await step("point-undeleted");

  // 5. the vault's settings (contributor): region (once, confirmed), soft delete, immutability
  await visit(co, "/settings");
  await screenshot(co, "settings");
  await co.fill("#region-form input[name=region]", "West Europe");
  await submit(co, "#region-form button[type=submit]");
  await noRefusal(co, "setting the region");
  await co.fill("#soft-delete-form input[name=days]", "21");
  await submit(co, "#soft-delete-form button[type=submit]");
  await noRefusal(co, "changing soft delete");
  await submit(co, "#immutability-form button[value=on]");
  await noRefusal(co, "turning immutability on");
  await screenshot(co, "settings-changed");
  result("settings", { region: await said(co, "#vault-region"),
                       soft_delete: await said(co, "#vault-soft-delete"),
                       immutability: await said(co, "#vault-immutability"),
                       dialogs: contributor.dialogs.splice(0) });
  await step("settings-changed");
  await submit(co, "#immutability-form button[value=off]");
  await noRefusal(co, "turning immutability off");
  result("immutability_off", await said(co, "#vault-immutability"));
  await step("immutability-off");

  // 6. alert channels (contributor): add a webhook, send it a test, remove it
  await visit(co, "/settings/alerts");
  await co.check("#channel-form input[name=kind][value=webhook]");
  await co.fill("#channel-form input[name=target]", process.env.HOOK_URL);
  await submit(co, "#channel-form button[type=submit]");
  await noRefusal(co, "adding the channel");
  await screenshot(co, "channel-added");
  await step("channel-added");
  const row = `#channels-table tr:has(code:text-is('${process.env.HOOK_URL}'))`;
  await submit(co, `${row} form[action$='/test'] button`);
  await noRefusal(co, "testing the channel");
  await screenshot(co, "channel-tested");
  result("channel_tested", await said(co, "section.outcome p.ok"));
  await step("channel-tested");
  await submit(co, `${row} form[action$='/remove'] button`);
  await noRefusal(co, "removing the channel");
  await screenshot(co, "channel-removed");
  result("channel_removed", { dialogs: contributor.dialogs.splice(0) });
  await step("channel-removed");

  // 7. API tokens and users (contributor)
  await visit(co, "/settings/access");
  await co.fill("#token-form input[name=name]", "ci-reader");
  await co.selectOption("#token-form select[name=role]", "reader");
  await submit(co, "#token-form button[type=submit]");
  await noRefusal(co, "creating the token");
  await screenshot(co, "token-created");
  result("token", { secret: (await co.textContent("#token-secret")).trim(),
                    said: await said(co, "section.token-created p.ok") });
  await step("token-created");
  await visit(co, "/settings/access");  // the secret is not shown again
  result("secret_again", await co.locator("#token-secret").count());
  await submit(co, "#tokens-table tr:has(td:text-is('ci-reader')) form[action$='/revoke'] button");
  await noRefusal(co, "revoking the token");
  await screenshot(co, "token-revoked");
  result("token_revoked", { dialogs: contributor.dialogs.splice(0) });
  await step("token-revoked");

  await co.fill("#user-form input[name=name]", process.env.NEW_USER);
  await co.selectOption("#user-form select[name=role]", "operator");
  await co.fill("#user-form input[name=password]", process.env.NEW_USER_PASSWORD);
  await co.fill("#user-form input[name=password_again]", process.env.NEW_USER_PASSWORD);
  await submit(co, "#user-form button[type=submit]");
  await noRefusal(co, "adding the user");
  await screenshot(co, "user-added");
  await step("user-added");
  await submit(co, `#users-table tr:has(td:text-is('${process.env.NEW_USER}')) form[action$='/remove'] button`);
  await noRefusal(co, "removing the user");
  await screenshot(co, "user-removed");
  result("user_removed", { dialogs: contributor.dialogs.splice(0) });
  await step("user-removed");

  // 8. the audit log lists what was done
  await visit(co, "/audit");
  await screenshot(co, "audit");
  result("audit", await co.$$eval("#audit-table tbody tr", (rows) => rows.map((r) =>
    [...r.cells].map((c) => c.textContent.replace(/\s+/g, " ").trim()))));
  await step("audited");

  // the reader: every page of those tasks, without a form or button to act; the tasks'
  // forms posted anyway, with the session's CSRF token, are refused
  const reader = await login(browser, "reader");
  const rd = reader.page;
  const pages = ["/", "/servers", `/servers/${SERVER}`, dbPage, "/jobs", `/jobs/${backup.id}`,
                 "/policies", `/policies/${policy}`, "/alerts", "/settings"];
  const TASK_BUTTONS = /^(Add server|Create a registration token|Revoke|Create policy|Save and apply|Delete policy|Discover databases now|Back up now|Verify every point|Start a restore drill|Verify|Drill|Delete|Undelete|Stop protection.*|Change policy|Protect selected|Protect all|Turn on|Turn off|Set the region|Save soft delete|Turn immutability (on|off)|Lock immutability|Add the channel|Send a test|Remove|Create a token|Add the user|Cancel job|Resolve)$/;
  const seen = [];
  for (const where of pages) {
    const response = await rd.goto(`${url}${where}`, { waitUntil: "load" });
    await screenshot(rd, `reader${where === "/" ? "-dashboard" : where.replaceAll("/", "-")}`);
    seen.push({
      path: where, status: response.status(),
      database_links: await rd.locator(`main a[href='${dbPage}']`).count(),
      forms: await rd.$$eval("form", (forms) => forms
        .filter((f) => (f.getAttribute("method") || "get").toLowerCase() === "post")
        .filter((f) => !f.matches("form.zone[action='/viewer/zone'], form.who[action='/logout']"))
        .map((f) => f.getAttribute("action"))),
      buttons: (await rd.$$eval("main button, main input[type=submit]", (bs) =>
        bs.map((b) => (b.textContent || b.value).replace(/\s+/g, " ").trim())))
        .filter((text) => TASK_BUTTONS.test(text)),
    });
  }
  for (const where of ["/settings/alerts", "/settings/access", "/audit", `/servers/${SERVER}/restore`]) {
    const response = await rd.goto(`${url}${where}`, { waitUntil: "load" });
    await screenshot(rd, `reader${where.replaceAll("/", "-")}`);
    seen.push({ path: where, status: response.status(), code: await said(rd, "main .error code") });
  }
  result("reader_pages", seen);

  await visit(rd, `/servers/${SERVER}`);
  const csrf = await rd.getAttribute("form.who input[name=csrf_token]", "value");
  const posts = [
    ["/servers", { name: "sneaky", pgdata: process.env.PG_DATA, port: process.env.PG_PORT }],
    ["/servers/register-vm", { host: "vm2", expires: "30" }],
    ["/policies", { name: "sneaky", full: "daily", full_time: "01:00", timezone: "UTC",
                    drill_time: "04:00", compression_level: "1", read_full_weeks: "4" }],
    [`/servers/${SERVER}/protect`, { db: "postgres", policy: "-", action: "selected" }],
    [`/servers/${SERVER}/policy`, { policy: "default" }],
    [`/servers/${SERVER}/backup`, { type: "full" }],
    [`/servers/${SERVER}/verify`, {}],
    [`/servers/${SERVER}/drill`, {}],
    [`/servers/${SERVER}/points/${point}/delete`, { database }],
    [`/servers/${SERVER}/points/${point}/undelete`, { database }],
    ["/settings/soft-delete", { enabled: "on", days: "30" }],
    ["/settings/immutability", { state: "on" }],
    ["/settings/alerts", { kind: "webhook", target: process.env.HOOK_URL }],
    ["/settings/access/tokens", { name: "sneaky", role: "contributor" }],
    ["/settings/access/users", { name: "sneaky", role: "contributor",
                                 password: process.env.NEW_USER_PASSWORD,
                                 password_again: process.env.NEW_USER_PASSWORD }],
  ];
  const refused = [];
  for (const [where, fields] of posts) {
    const res = await rd.request.post(`${url}${where}`, { form: { ...fields, csrf_token: csrf },
                                                          maxRedirects: 0 });
    const code = (await res.text()).match(/<code>([a-z_.]+)<\/code>/)?.[1] ?? null;
    refused.push({ path: where, status: res.status(), code });
  }
  result("reader_posts", refused);
  result("reader_dialogs", reader.dialogs);
  await step("reader-refused");
} finally {
  await browser.close();
  hangUp();
}
