// dbsafe portal: a light touch of JavaScript, no build step.
// Elements with data-confirm ask before their form submits.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
