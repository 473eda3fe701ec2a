// The dashboard's script: refreshes the page from dashboard.json every 2 s and retries failed jobs.
// A file of its own, not inline, so the page's Content-Security-Policy can refuse every inline script.
(function () {
  const form = document.getElementById("filters");
  const status = document.getElementById("updated");
  // Relative to the page without the user:password a URL like http://ops:TOKEN@host/ carries:
  // fetch refuses such URLs, and the browser already holds those credentials for this origin.
  const api = (path) => new URL(path, location.origin + location.pathname);
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const duration = (job) => {
    if (!job.started_at) return "";
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    const s = Math.max(0, (end - Date.parse(job.started_at)) / 1000);
    return s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  };
  const retry = (job) => job.status === "failed" ? ` <button type="button" data-retry="${esc(job.id)}">Retry</button>` : "";
  const row = (job) => `<tr data-id="${esc(job.id)}"><td><span class="state ${esc(job.status)}">${esc(job.status)}</span>${retry(job)}</td>
    <td>${esc(job.target)}${job.mirror ? `<br><small>${esc(job.mirror)}</small>` : ""}</td><td>${esc(job.repo)}@${esc(job.ref)}</td><td><code>${esc((job.after || "").slice(0, 7))}</code></td>
    <td>${esc(job.created_at)}</td><td>${duration(job)}</td><td>${esc(job.attempts)}</td><td class="error">${esc(job.error)}</td></tr>`;
  const card = (t) => `<div class="target"><strong>${esc(t.name)}</strong><small>${esc(t.provider)}</small>
    <small>last success: ${t.last_success ? esc(t.last_success.at) : "never"}</small>
    ${t.next_reconcile ? `<small>next reconcile: ${esc(t.next_reconcile)}</small>` : ""}</div>`;
  const sweep = (s) => `<p class="muted">Last redelivery sweep of <strong>${esc(s.source)}</strong> at ${esc(s.at)}:
    ${esc(s.found)} missed, ${esc(s.redelivered)} redelivered, ${esc(s.failed)} failed.</p>`;
  async function refresh() {
    const params = new URLSearchParams(new FormData(form));
    try {
      const response = await fetch(api("dashboard.json?" + params), {credentials: "same-origin"});
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.status);
      const data = await response.json();
      document.getElementById("jobs").innerHTML = data.jobs.length ? data.jobs.map(row).join("")
        : '<tr><td colspan="8" class="muted">No jobs match.</td></tr>';
      document.getElementById("targets").innerHTML = data.targets.map(card).join("");
      document.getElementById("sweeps").innerHTML = data.sweeps.map(sweep).join("");
      status.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      status.textContent = "cannot refresh (" + err.message + ")";
    }
  }
  // A same-origin fetch with a JSON body: the form of state change the bridge accepts without a
  // Bearer token, because a page on another site cannot send it (see docs/SECURITY.md).
  async function retryJob(button) {
    button.disabled = true;
    const response = await fetch(api("jobs/" + encodeURIComponent(button.dataset.retry) + "/retry"), {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"}, body: "{}",
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      status.textContent = "retry refused: " + (answer.error || response.status);
      button.disabled = false;
      return;
    }
    await refresh();
  }
  document.getElementById("jobs").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-retry]");
    if (button) retryJob(button);
  });
  form.addEventListener("input", refresh);
  refresh();
  setInterval(refresh, 2000);
})();
