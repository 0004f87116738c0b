// The portal's main pages at a desktop's width (1280x800) and a phone's (390x844): on each,
// axe-core's accessibility rules, the keyboard from the top of the page (the navigation's
// links and the main content's first control reached by Tab, each with a visible focus
// outline; the skip link to the main content), and at the phone's width whether the page as a whole scrolls sideways; on the
// database's page, the restore timeline driven by the keyboard alone. A screenshot of every
// page at both widths.
//
// Run by tests/browser/test_portal_a11y.py, which prepares the vault, the cluster and
// `dbsafe serve`, and judges the results. Environment: DBSAFE_URL, DBSAFE_USER,
// DBSAFE_PASSWORD, PAGES (JSON [[name, path], ...], visited logged in, after the login
// page), AXE (axe.min.js from npm, injected into each page: nothing from a CDN), ARTEFACTS
// (screenshots), PLAYWRIGHT_CORE. "@@result KEY JSON" lines hand results back to pytest
// ("page" once per page visited); anything else on stdout is a log line.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DBSAFE_URL;
const pages = JSON.parse(process.env.PAGES);
const artefacts = process.env.ARTEFACTS;
const result = (key, value) => console.log(`@@result ${key} ${JSON.stringify(value)}`);
const TIMEOUT = 60_000;
const MAX_TABS = 120;

const VIEWPORTS = {
  desktop: { viewport: { width: 1280, height: 800 } },
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};

// axe on the page as it stands: every rule axe runs by default (WCAG 2.x A and AA, best
// practices); pytest fails on the serious and critical ones, the rest is reported
async function axe(page) {
  await page.addScriptTag({ path: process.env.AXE });
  return page.evaluate(async () => {
    const run = await window.axe.run(document, { resultTypes: ["violations"] });
    return run.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
      targets: v.nodes.slice(0, 4).map((n) => n.target.join(" ")),
    }));
  });
}

// A short description of the focused element, to name it in a failure, and how it shows
const describeFocus = () => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const name = (el.getAttribute("aria-label") || el.textContent || el.getAttribute("name") || "")
    .replace(/\s+/g, " ").trim().slice(0, 40);
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const shadow = style.boxShadow && style.boxShadow !== "none";
  return {
    label: `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${el.getAttribute("href") ? `[href="${el.getAttribute("href")}"]` : ""} "${name}"`,
    inNav: !!el.closest("header nav"), inMain: !!el.closest("main"),
    href: el.closest("header nav") ? el.getAttribute("href") : null,
    visible: outline || shadow,
    isBand: el.matches("#timeline .band"), isMark: el.matches("#timeline .mark"),
  };
};

// Tab from the top of the page until the focus is in the main content: which of the
// navigation's links it passed, whether the first element focused in main is main's first
// focusable element, and every element that showed no focus outline
async function keyboard(page) {
  const navLinks = await page.$$eval("header nav a[href]", (as) => as.map((a) => a.getAttribute("href")));
  const mainFirst = await page.evaluate(() => {
    const focusable = "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]";
    const el = [...document.querySelectorAll(`main :is(${focusable})`)].find((e) =>
      !e.disabled && e.tabIndex >= 0 && e.checkVisibility({ visibilityProperty: true }));
    if (!el) return null;
    const text = (el.getAttribute("aria-label") || el.textContent || el.getAttribute("name") || "")
      .replace(/\s+/g, " ").trim().slice(0, 40);
    return `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${el.getAttribute("href") ? `[href="${el.getAttribute("href")}"]` : ""} "${text}"`;
  });
  const seen = new Set();
  const unmarked = [];
  let mainReached = null;
  const autofocused = await page.evaluate(describeFocus);  // a page may focus its first field
  if (autofocused?.inMain) {
    mainReached = autofocused.label;
    if (!autofocused.visible) unmarked.push(autofocused.label);
  }
  for (let i = 0; i < MAX_TABS && mainFirst && !mainReached; i += 1) {
    await page.keyboard.press("Tab");
    const f = await page.evaluate(describeFocus);
    if (!f) continue;
    if (!f.visible) unmarked.push(f.label);
    if (f.href) seen.add(f.href);
    if (f.inMain) { mainReached = f.label; break; }
  }
  // the skip link: the first Tab from the top shows it, Enter on it and Tab land on the main
  // content's first control (not on a page that focuses its first field itself)
  let skip = null;
  if (mainFirst && !autofocused?.inMain) {
    await page.reload({ waitUntil: "load" });
    await page.keyboard.press("Tab");
    skip = await page.evaluate(() => {
      const el = document.activeElement;
      const r = el.getBoundingClientRect();
      return { focused: el.matches("a.skip"), shown: r.width > 0 && r.top >= 0 && r.bottom <= innerHeight };
    });
    await page.keyboard.press("Enter");
    await page.keyboard.press("Tab");
    skip.then = (await page.evaluate(describeFocus))?.label ?? null;
  }
  return {
    nav_missed: navLinks.filter((h) => !seen.has(h)), main_first: mainFirst,
    main_reached: mainReached, unmarked, skip,
  };
}

// At the phone's width: how wide the page is, and the outermost elements that stick out
// of the viewport while their parent fits in it (a wide table in a scrolling wrapper does
// not count: its wrapper fits). A phone (isMobile) zooms out to show a page wider than
// itself, which widens window.innerWidth to the page's width: the viewport's own width
// is the measure then.
async function overflow(page, viewportWidth) {
  return page.evaluate((viewportWidth) => {
    const width = Math.min(window.innerWidth, viewportWidth);
    const scrolls = (el) => ["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(el).overflowX);
    const inScroller = (el) => {
      for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
        if (scrolls(up)) return true;
      }
      return false;
    };
    const out = [];
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      const parent = el.parentElement.getBoundingClientRect();
      if (r.width && r.right > width + 1 && parent.right <= width + 1 && out.length < 6 &&
          !inScroller(el)) {
        out.push(`${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${el.className && typeof el.className === "string" ? `.${el.className.trim().split(/\s+/).join(".")}` : ""} (right ${Math.round(r.right)})`);
      }
    }
    return { scroll_width: document.documentElement.scrollWidth, inner_width: width, sticking_out: out };
  }, viewportWidth);
}

// The smallest text of the charts shown (svg.chart: each is drawn twice, one hidden), in
// CSS pixels as drawn: its font size in the drawing's units times the drawing's scale.
async function chartText(page) {
  return page.evaluate(() => {
    let smallest = null;
    for (const text of document.querySelectorAll("svg.chart text")) {
      if (!text.getClientRects().length) continue;  // in the hidden drawing
      const scale = text.ownerSVGElement.getScreenCTM().a;  // CSS px per unit
      const px = parseFloat(getComputedStyle(text).fontSize) * scale;
      smallest = smallest === null ? px : Math.min(smallest, px);
    }
    return smallest === null ? null : Math.round(smallest * 10) / 10;
  });
}

async function visit(page, viewport, name, where) {
  const response = await page.goto(`${url}${where}`, { waitUntil: "load" });
  const found = {
    viewport, name, path: where, status: response.status(),
    keyboard: await keyboard(page),
    ...(viewport === "phone" ? await overflow(page, VIEWPORTS.phone.viewport.width) : { scroll_width: 0, inner_width: 0, sticking_out: [] }),
    violations: await axe(page),
    chart_text_px: await chartText(page),
  };
  const shot = `${viewport}-${String(pages.findIndex(([n]) => n === name) + 2).padStart(2, "0")}-${name}.png`;
  await page.evaluate(() => { document.activeElement?.blur?.(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(artefacts, shot), fullPage: true });
  found.screenshot = shot;
  result("page", found);
  const serious = found.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  console.log(`${viewport} ${name}: ${found.violations.length} axe violation(s), ${serious.length} serious or critical`);
}

// The timeline of the database's page from the keyboard: Tab to the log band, Home, End
// and ← pick instants in it; Tab on to a backup's mark, Enter picks that point
async function timeline(page, viewport, where) {
  await page.goto(`${url}${where}`, { waitUntil: "load" });
  await page.evaluate(() => { document.activeElement?.blur?.(); window.scrollTo(0, 0); });
  const band = await page.$eval("#timeline .band", (b) => ({ start: b.dataset.start, end: b.dataset.end }));
  const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  const found = { band_start: iso(Date.parse(band.start)), band_end: iso(Date.parse(band.end) - 1000) };
  let f = null;
  for (let i = 0; i < MAX_TABS * 2; i += 1) {
    await page.keyboard.press("Tab");
    f = await page.evaluate(describeFocus);
    if (f?.isBand || f?.isMark) break;
  }
  found.focused = f?.isBand ? "band" : f?.isMark ? "mark" : f?.label ?? null;
  found.focus_visible = !!f?.visible;
  await page.keyboard.press("Home");
  found.home = await page.inputValue("#pick-time");
  await page.keyboard.press("End");
  found.end = await page.inputValue("#pick-time");
  await page.keyboard.press("ArrowLeft");
  found.left = await page.inputValue("#pick-time");
  found.shown = (await page.textContent("#pick-shown")).trim();
  found.valuetext = await page.evaluate(() => document.activeElement.getAttribute("aria-valuetext"));
  await page.screenshot({ path: path.join(artefacts, `${viewport}-timeline-band-picked.png`), fullPage: true });
  for (let i = 0; i < 20; i += 1) {
    await page.keyboard.press("Tab");
    f = await page.evaluate(describeFocus);
    if (f?.isMark || !f?.isBand) break;
  }
  found.mark_point = f?.isMark ? await page.evaluate(() => document.activeElement.dataset.point) : null;
  if (found.mark_point) {
    await page.keyboard.press("Enter");
    found.picked_point = await page.inputValue("#pick-point");
    found.time_after_mark = await page.inputValue("#pick-time");
  }
  await page.screenshot({ path: path.join(artefacts, `${viewport}-timeline-mark-picked.png`), fullPage: true });
  result(`timeline_${viewport}`, found);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"],
});
try {
  for (const [viewport, options] of Object.entries(VIEWPORTS)) {
    const context = await browser.newContext(options);
    context.setDefaultTimeout(TIMEOUT);
    context.setDefaultNavigationTimeout(TIMEOUT);
    const page = await context.newPage();
    page.on("pageerror", (err) => { console.log(`page error: ${err.message}`); process.exitCode = 1; });

    await visit(page, viewport, "login", "/login");
    await page.fill("input[name=name]", process.env.DBSAFE_USER);
    await page.fill("input[name=password]", process.env.DBSAFE_PASSWORD);
    await Promise.all([page.waitForURL(`${url}/`), page.click("form[action='/login'] button")]);
    for (const [name, where] of pages) await visit(page, viewport, name, where);
    await timeline(page, viewport, pages.find(([n]) => n === "database")[1]);
    await context.close();
  }
} finally {
  await browser.close();
}
