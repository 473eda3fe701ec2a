// The console's one script, on every page: refreshes the page's live parts from its own URL (so the
// filters, kept in the URL, survive), keeps the job filters in the URL as they are typed, and sends
// the Retry button's request. A file of its own, not inline, so the pages' Content-Security-Policy
// can refuse every inline script. The pages are whole without it: rendered on the server.
(function () {
  "use strict";
  const body = document.body;
  const status = document.getElementById("updated");
  const root = body.dataset.root || "/";
  // URLs on this origin without the user:password a URL like http://ops:TOKEN@host/ carries: fetch
  // refuses such URLs, and the browser already holds those credentials for this origin.
  const here = () => new URL(location.pathname + location.search, location.origin);
  const at = (path) => new URL(path, location.origin);
  let timer = null;

  const said = (when) => { status.textContent = "updated " + when.toLocaleTimeString(); };
  const schedule = (every) => {
    clearTimeout(timer);
    timer = every ? setTimeout(refresh, Number(every)) : null;
  };

  // What went wrong, in the words the bridge used: a JSON error, or the reason on a page.
  function reason(text, response) {
    try {
      return JSON.parse(text).error || response.status;
    } catch (notJson) {
      const page = new DOMParser().parseFromString(text, "text/html");
      const why = page.querySelector("[data-reason]");
      return why ? why.textContent : response.status;
    }
  }

  async function refresh() {
    let every = body.dataset.refresh;
    try {
      const response = await fetch(here(), {credentials: "same-origin", headers: {Accept: "text/html"}});
      const text = await response.text();
      if (!response.ok) throw new Error(reason(text, response));
      const page = new DOMParser().parseFromString(text, "text/html");
      for (const part of document.querySelectorAll("[data-live]")) {
        const fresh = page.getElementById(part.id);
        if (fresh) part.replaceWith(document.importNode(fresh, true));
      }
      every = page.body.dataset.refresh;  // a job that ended stops refreshing
      if (every) body.dataset.refresh = every; else delete body.dataset.refresh;
      said(new Date());
    } catch (err) {
      status.textContent = "cannot refresh (" + err.message + ")";
    }
    schedule(every);
  }

  // A same-origin fetch with a JSON body: the form of state change the bridge accepts without a
  // Bearer token, because a page on another site cannot send it (see docs/SECURITY.md).
  async function retry(button) {
    button.disabled = true;
    const url = at(root + "jobs/" + encodeURIComponent(button.dataset.retry) + "/retry");
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"}, body: "{}",
    });
    if (!response.ok) {
      status.textContent = "retry refused: " + reason(await response.text(), response);
      button.disabled = false;
      return;
    }
    if (!body.dataset.refresh) body.dataset.refresh = "2000";  // a retried job runs again: follow it
    await refresh();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-retry]");
    if (button) retry(button);
  });

  // Filters: typed into the URL (replaceState keeps one history entry), then the list refreshed.
  const form = document.getElementById("filters");
  if (form) {
    let typing = null;
    const apply = () => {
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
      const query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
      refresh();
    };
    form.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(apply, 250); });
    form.addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(typing); apply(); });
  }

  said(new Date());  // the page itself is fresh
  schedule(body.dataset.refresh);
})();
