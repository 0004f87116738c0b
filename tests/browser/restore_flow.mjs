// The portal in a real browser: log in, protect a database, back it up
// from its page and watch the job, pick an instant on the restore timeline, run the wizard
// to a new database on the same server, and watch the restore finish.
//
// Run by tests/browser/test_portal_browser.py, which prepares the vault, the cluster and
// `dbsafe serve`, and checks the restored rows afterwards. Environment: DBSAFE_URL,
// DBSAFE_USER, DBSAFE_PASSWORD, DBSAFE_SERVER, DBSAFE_DATABASE, ARTEFACTS (screenshots),
// PLAYWRIGHT_CORE (the module's folder, installed by scripts/install.sh --test).
//
// Talking to pytest: a line "@@step NAME" on stdout asks pytest to act (write rows, ...);
// the script goes on when pytest answers with a line on stdin. "@@result KEY VALUE" lines
// hand results back. Anything else on stdout is a log line.

import { createRequire } from "node:module";

import { hangUp, jobEnd, screenshots, step } from "./pytest_talk.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DBSAFE_URL;
const server = process.env.DBSAFE_SERVER;
const database = process.env.DBSAFE_DATABASE;
const JOB_SECONDS = 300;

const result = (key, value) => console.log(`@@result ${key} ${value}`);
const screenshot = screenshots(process.env.ARTEFACTS);

// Follow a job to its end, on its page (/jobs/ID) and through the API with the session.
async function watchJob(page, name) {
  await screenshot(page, `${name}-job-started`);
  const { jobId, job } = await jobEnd(page, url, name, JOB_SECONDS, 500);
  await page.reload();
  await screenshot(page, `${name}-job-ended`);
  if (job.state !== "completed") {
    throw new Error(`${name} job ${jobId} ended ${job.state}: ${job.error_code} ${job.error_message}`);
  }
  console.log(`${name} job ${jobId} completed`);
  return jobId;
}

async function backUpNow(page, type) {
  await page.goto(`${url}/servers/${server}/databases/${database}`);
  await page.selectOption("form.backup-now select[name=type]", type);
  await Promise.all([page.waitForURL(/\/jobs\//), page.click("form.backup-now button")]);
  return watchJob(page, `backup-${type}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => { console.log(`page error: ${err.message}`); process.exitCode = 1; });

  // log in
  await page.goto(`${url}/`);
  await page.waitForURL(/\/login/);
  await screenshot(page, "login");
  await page.fill("input[name=name]", process.env.DBSAFE_USER);
  await page.fill("input[name=password]", process.env.DBSAFE_PASSWORD);
  await Promise.all([page.waitForURL(`${url}/`), page.click("form[action='/login'] button")]);
  await screenshot(page, "dashboard");

  // protect the database from its server's page: tick it, the default policy (FULL
  // model: its WAL is archived into the vault), allow the restart archiving needs
  await page.goto(`${url}/servers/${server}`);
  await screenshot(page, "server");
  await page.check(`#protect-form input[name=db][value='${database}']`);
  await page.selectOption("#protect-form select[name=policy]", "default");
  await page.check("#protect-form input[name=restart]");
  await Promise.all([page.waitForLoadState("load"),
                     page.click("#protect-form button[value=selected]")]);
  await screenshot(page, "server-protected");
  const refused = await page.locator(".refused, .error").allTextContents();
  if (refused.join("").trim()) throw new Error(`protecting was refused: ${refused.join(" ")}`);

  // its page, then a full backup from it
  await page.goto(`${url}/servers/${server}/databases/${database}`);
  await screenshot(page, "database-protected");
  await backUpNow(page, "full");

  // pytest writes rows over a while after the full; a log backup takes their WAL in
  await step("write-rows");
  await backUpNow(page, "log");

  // the timeline: the last hour, click in the middle of the log band
  await page.goto(`${url}/servers/${server}/databases/${database}`);
  await Promise.all([page.waitForURL(/window=1h/), page.click(".windows a:text-is('1h')")]);
  const band = page.locator("#timeline rect.band").last();
  const box = await band.boundingBox();
  if (!box) throw new Error("no log band on the timeline");
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  const picked = await page.inputValue("#pick-time");
  if (!picked) throw new Error("clicking the band picked no instant");
  result("picked", picked);
  await screenshot(page, "timeline-picked");

  // the wizard: prefilled with the instant; a new database on the same server
  await Promise.all([page.waitForURL(/\/restore\?/), page.click("#restore-pick button")]);
  if ((await page.inputValue("#wizard input[name=time]")) !== picked) {
    throw new Error("the wizard did not get the picked instant");
  }
  await page.check("#wizard input[name=target][value=server]");
  const newName = await page.inputValue("#wizard input[name=new_name]");
  result("new_name", newName);
  await screenshot(page, "wizard");
  await Promise.all([page.waitForLoadState("load"), page.click("#wizard button[value=check]")]);
  await page.waitForSelector("#checks");
  await screenshot(page, "wizard-checked");
  const failed = await page.locator("#checks li.failed").allTextContents();
  if (failed.length) throw new Error(`checks failed: ${failed.join(" | ")}`);
  await Promise.all([page.waitForURL(/\/jobs\//), page.click("#start-restore")]);
  await watchJob(page, "restore");

  await page.goto(`${url}/servers/${server}/databases/${database}`);
  await screenshot(page, "database-after");
} finally {
  await browser.close();
  hangUp();
}
