// dbsafe portal: a light touch of JavaScript, no build step.
// Elements with data-confirm ask before their form submits.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// portal pages (helper "portal") -----------------------------------------------------------
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
// end of portal pages
