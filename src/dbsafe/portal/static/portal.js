// dbsafe portal: a light touch of JavaScript, no build step.
// Elements with data-confirm ask before their form submits.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// --- database page and restore wizard ---
// The timeline: a click on the log band picks that instant (clamped to the band's range),
// a click on a mark picks that point; either fills the "Restore…" form and shows it.
// From the keyboard: on a focused band (a slider), ← → step through it (a hundredth of the
// window, at most a tenth of the band, at least a second), Page Up / Page Down ten steps,
// Home and End its first and last instants; Enter or Space on a focused mark picks it.
(() => {
  const svg = document.getElementById("timeline");
  const form = document.getElementById("restore-pick");
  if (!svg || !form) return;
  const time = document.getElementById("pick-time");
  const point = document.getElementById("pick-point");
  const shown = document.getElementById("pick-shown");
  const cursor = document.getElementById("tl-cursor");
  const start = Date.parse(svg.dataset.start);
  const end = Date.parse(svg.dataset.end);
  const width = Number(svg.dataset.width);
  const isoSeconds = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  const moveCursor = (x) => {
    cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
    cursor.setAttribute("visibility", "visible");
  };
  const unpick = () => svg.querySelectorAll(".mark.picked").forEach((m) => m.classList.remove("picked"));
  const pickMark = (mark) => {
    unpick();
    mark.classList.add("picked");
    point.value = mark.dataset.point; time.value = "";
    shown.textContent = `point ${mark.dataset.point} (ended ${mark.dataset.time})`;
  };
  const bandRange = (band) => {
    const first = Date.parse(band.dataset.start);
    return [first, Math.max(first, Date.parse(band.dataset.end) - 1000)];
  };
  const pickInstant = (band, ms) => {
    const [first, last] = bandRange(band);
    ms = Math.min(Math.max(ms, first), last);
    unpick();
    time.value = isoSeconds(ms); point.value = "";
    shown.textContent = `instant ${time.value}`;
    moveCursor(((ms - start) / (end - start)) * width);
    band.setAttribute("aria-valuenow", last > first ? Math.round((100 * (ms - first)) / (last - first)) : 100);
    band.setAttribute("aria-valuetext", time.value);
  };
  svg.addEventListener("click", (event) => {
    const mark = event.target.closest(".mark");
    if (mark) { pickMark(mark); return; }
    const band = event.target.closest(".band");
    if (!band) return;
    const at = svg.createSVGPoint();
    at.x = event.clientX; at.y = event.clientY;
    const x = at.matrixTransform(svg.getScreenCTM().inverse()).x;
    pickInstant(band, start + (x / width) * (end - start));
  });
  svg.addEventListener("keydown", (event) => {
    const mark = event.target.closest(".mark");
    if (mark && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); pickMark(mark); }
    const band = event.target.closest(".band");
    if (!band) return;
    const [first, last] = bandRange(band);
    const step = Math.max(1000, Math.min((end - start) / 100, (last - first) / 10));
    const picked = Date.parse(time.value);  // from here when it lies in this band, else its end
    const now = picked >= first && picked <= last ? picked : last;
    const to = { ArrowLeft: now - step, ArrowDown: now - step, ArrowRight: now + step,
      ArrowUp: now + step, PageDown: now - 10 * step, PageUp: now + 10 * step, Home: first,
      End: last, Enter: now, " ": now }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    pickInstant(band, to);
  });
  time.addEventListener("input", () => { if (time.value) point.value = ""; });
  point.addEventListener("input", () => { if (point.value) time.value = ""; });
})();

// The wizard: show the fields of the chosen target only (a block may serve several: the
// host of a data directory or files); once a field changes after a check, the results are
// stale and "Start restore" goes away until checked again.
(() => {
  const wizard = document.getElementById("wizard");
  if (!wizard) return;
  const showTarget = () => {
    const chosen = wizard.querySelector("input[name=target]:checked")?.value;
    wizard.querySelectorAll(".target-fields").forEach((div) => {
      div.hidden = !div.dataset.target.split(" ").includes(chosen);
    });
  };
  const stale = () => {
    document.getElementById("start-restore")?.closest("p")?.remove();
    document.getElementById("checks")?.classList.add("stale");
  };
  wizard.addEventListener("change", (event) => {
    if (event.target.name === "target") showTarget();
    stale();
  });
  wizard.addEventListener("input", (event) => {
    const radio = wizard.querySelector(`input[name=source][value="${event.target.name}"]`);
    if (radio) radio.checked = true;  // typing an instant or a point chooses it
    stale();
  });
  showTarget();
})();
// --- end database page and restore wizard ---

// portal pages ----------------------------------------------------------------------------
// A button with data-confirm asks before its form submits (one form, several actions).
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

// A checkbox with data-check-all="NAME" checks every enabled box named NAME in its form.
document.addEventListener("change", (event) => {
  const name = event.target.dataset && event.target.dataset.checkAll;
  if (!name) return;
  for (const box of event.target.form.querySelectorAll(`input[type=checkbox][name="${name}"]`)) {
    if (!box.disabled) box.checked = event.target.checked;
  }
});

// A running job's page follows its server-sent events (the session cookie authenticates
// them) and reloads once it ends, to show the final state, error and result.
document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("job");
  if (!section || section.dataset.active !== "true" || !window.EventSource) return;
  const bar = document.getElementById("job-progress");
  const bytes = document.getElementById("job-bytes");
  const state = document.getElementById("job-state");
  const mib = (n) => (n / 1048576).toFixed(1);
  const events = new EventSource(`/api/v1/jobs/${encodeURIComponent(section.dataset.job)}/events`);
  const show = (message) => {
    const job = JSON.parse(message.data);
    if (job.bytes_total) bar.value = (100 * job.bytes_done) / job.bytes_total;
    bytes.textContent = `${mib(job.bytes_done)} of ${mib(job.bytes_total)} MiB`;
    state.textContent = job.state;
    state.className = `state-${job.state}`;
    return job;
  };
  events.addEventListener("progress", show);
  events.addEventListener("end", (message) => {
    show(message);
    events.close();
    window.location.reload();
  });
  events.onerror = () => events.close();
});

// A button with data-copy="ID" copies the text of element ID (the servers page's
// registration command), and says so.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy)?.textContent ?? "";
  try {
    await navigator.clipboard.writeText(text.trim());
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select the command and copy it";  // no clipboard (plain HTTP)
  }
});

// A table wider than its place (on a phone portal.css lets it scroll sideways) takes the
// keyboard's focus, so that the arrow keys scroll it too.
(() => {
  const focusableIfWide = () => document.querySelectorAll("main table").forEach((table) => {
    const wide = table.scrollWidth > table.clientWidth + 1;
    if (wide && !table.hasAttribute("tabindex")) {
      table.tabIndex = 0;
      table.dataset.scrolls = "";
    } else if (!wide && "scrolls" in table.dataset) {
      table.removeAttribute("tabindex");
      delete table.dataset.scrolls;
    }
  });
  focusableIfWide();
  window.addEventListener("resize", focusableIfWide);
})();

// The header's zone choice applies as soon as it is picked (without script: its button).
document.querySelectorAll("form.zone select").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
