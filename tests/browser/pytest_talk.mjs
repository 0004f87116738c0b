// What the browser scripts run by pytest share: the conversation with pytest ("@@step
// NAME" on stdout, answered "ok" on stdin; "@@result KEY VALUE" lines), numbered full-page
// screenshots, and following a job through the API with the page's session.

import path from "node:path";
import readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin });
const answers = lines[Symbol.asyncIterator]();

// At the end: an open stdin would keep node running.
export function hangUp() {
  lines.close();
  process.stdin.destroy();
}

// Ask pytest to act or check (write rows, look at the CLI, ...); go on when it answers.
export async function step(name) {
  console.log(`@@step ${name}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== "ok") throw new Error(`pytest did not complete step ${name}: ${value}`);
}

// A screenshot function writing 01-NAME.png, 02-NAME.png, ... into ``folder``.
export function screenshots(folder) {
  let shot = 0;
  return async (page, name) => {
    shot += 1;
    const file = path.join(folder, `${String(shot).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot ${file}`);
  };
}

export const ENDED = ["completed", "completed_with_warnings", "failed", "cancelled"];

// The id of the job whose page ``page`` shows, and the job once it ended (polled through
// the API with the page's session every ``everyMs``, for at most ``seconds``).
export async function jobEnd(page, baseUrl, what, seconds, everyMs) {
  const match = new URL(page.url()).pathname.match(/^\/jobs\/([^/]+)$/);
  if (!match) throw new Error(`expected a job page after ${what}, got ${page.url()}`);
  const jobId = match[1];
  let job;
  for (let waited = 0; waited <= seconds * 1000; waited += everyMs) {
    const res = await page.request.get(`${baseUrl}/api/v1/jobs/${jobId}`);
    if (!res.ok()) throw new Error(`GET job ${jobId}: ${res.status()} ${await res.text()}`);
    job = await res.json();
    if (ENDED.includes(job.state)) return { jobId, job };
    await page.waitForTimeout(everyMs);
  }
  throw new Error(`${what} job ${jobId} still ${job.state} after ${seconds} s`);
}
