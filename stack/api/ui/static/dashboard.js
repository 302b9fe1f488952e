// celery-stack dashboard: hand-written, no dependencies. Every piece of task data is put in
// the page with textContent (never innerHTML), so an argument holding <script> is text.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const PAGE_SIZE = 25;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const state = { view: "overview", offset: 0, name: "", error: "", timer: null };

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function problem(message) {
    const box = $("problem");
    if (!box) return;
    box.hidden = !message;
    box.textContent = message || "";
  }

  async function call(method, url) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      window.location.assign("/ui/login");
    }
    if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
    return body;
  }

  function fillRows(table, rows, empty) {
    const body = table.querySelector("tbody");
    body.replaceChildren(
      ...rows.map((cells) => {
        const tr = el("tr");
        for (const cell of cells) {
          const td = el("td");
          if (cell instanceof Node) td.append(cell);
          else td.textContent = cell === null || cell === undefined ? "-" : String(cell);
          tr.append(td);
        }
        return tr;
      }),
    );
    if (!rows.length) {
      const columns = table.querySelectorAll("thead th").length || 1;
      const tr = el("tr");
      tr.append(el("td", empty || "none", { colspan: String(columns), class: "muted" }));
      body.append(tr);
    }
  }

  function fillList(dl, pairs) {
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", k), el("dd", v === null || v === undefined ? "-" : v)]));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.round(seconds);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function when(epoch) {
    return new Date(epoch * 1000).toLocaleString();
  }

  function chart(series, every) {
    const box = $("chart");
    const ns = "http://www.w3.org/2000/svg";
    const width = 600;
    const height = 120;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "tasks succeeded and failed per interval");
    const peak = Math.max(1, ...series.map((p) => Math.max(p.succeeded, p.failed + p.dead_lettered)));
    const slot = width / Math.max(series.length, 30);
    series.forEach((point, i) => {
      const bars = [
        ["ok", point.succeeded, 0],
        ["bad", point.failed + point.dead_lettered, slot / 2],
      ];
      for (const [kind, value, shift] of bars) {
        const h = (value / peak) * height;
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("class", kind);
        rect.setAttribute("x", String(i * slot + shift));
        rect.setAttribute("y", String(height - h));
        rect.setAttribute("width", String(Math.max(1, slot / 2 - 1)));
        rect.setAttribute("height", String(h));
        const title = document.createElementNS(ns, "title");
        title.textContent = `${kind === "ok" ? "succeeded" : "failed"}: ${value}`;
        rect.append(title);
        svg.append(rect);
      }
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(height + 16));
    label.textContent = series.length
      ? `peak ${peak} per ${every} s · green: succeeded · red: failed or dead-lettered`
      : "no sample interval yet";
    svg.append(label);
    box.replaceChildren(svg);
    $("chart-note").textContent = series.length ? "" : "(collecting: one sample per " + every + " s)";
  }

  async function showOverview() {
    const o = await call("GET", "/ui/api/overview");
    const r = o.redis;
    fillList($("redis"), [
      ["version", r.version],
      ["memory", `${r.memory} (peak ${r.peak_memory})`],
      ["persistence", `AOF ${r.aof ? "on" : "off"}, last save ${r.last_save_status}`],
      ["clients", r.clients],
      ["uptime", duration(r.uptime_s)],
    ]);
    const q = o.queues;
    const waiting = Object.values(q.queues).reduce((a, b) => a + b, 0);
    fillList($("totals"), [
      ["profile", o.profile],
      ["waiting", waiting],
      ["unacked", q.unacked],
      ["dead letters", q.dead_letters],
    ]);
    chart(o.throughput, o.sample_every_s);
    fillRows($("workers"), o.workers.map((w) => [w.name, w.concurrency, w.active, w.processed]),
      "no worker answered");
    fillRows(
      $("services"),
      (o.services || []).map((s) => [s.name, s.state, s.pid, duration(s.uptime_s), s.restarts, s.url]),
      o.services === null ? "this API was not started by celery-stack up" : "none",
    );
  }

  async function showQueues() {
    const q = await call("GET", "/ui/api/queues");
    const head = el("tr");
    for (const h of ["queue", ...q.levels, "total"]) head.append(el("th", h));
    $("queue-table").querySelector("thead").replaceChildren(head);
    fillRows(
      $("queue-table"),
      Object.entries(q.queues).map(([name, levels]) => {
        const counts = q.levels.map((l) => levels[l]);
        return [name, ...counts, counts.reduce((a, b) => a + b, 0)];
      }),
    );
    $("unacked").textContent = String(q.unacked);
    $("unconsumed").textContent =
      q.unconsumed === null ? "unknown (workers not asked)" : q.unconsumed.join(", ") || "none";
    fillRows($("limited"), q.rate_limited.map((t) => [t.task, t.rate, t.deferred]));
  }

  async function showDeadLetters() {
    const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE, name: state.name, error: state.error });
    const page = await call("GET", "/ui/api/dead-letters?" + params);
    $("dl-total").textContent = `(${page.total})`;
    fillRows(
      $("dl-table"),
      page.items.map((d) => {
        const link = el("a", "open", { href: "/ui/dead-letters/" + encodeURIComponent(d.id), "data-record-id": d.id });
        return [d.name, `${d.exception_type}: ${d.exception_message}`, d.arguments, d.attempts, when(d.last_failure_at) + (d.replayed ? " (replayed)" : ""), link];
      }),
    );
    const last = Math.min(page.total, page.offset + page.items.length);
    $("dl-page").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
    $("dl-prev").disabled = page.offset === 0;
    $("dl-next").disabled = last >= page.total;
  }

  async function showTask(id) {
    if (!id) return;
    $("task-id").value = id;
    const status = await call("GET", "/ui/api/tasks/" + encodeURIComponent(id));
    $("task-result").textContent = JSON.stringify(status, null, 2);
  }

  const views = {
    overview: showOverview,
    queues: showQueues,
    "dead-letters": showDeadLetters,
    task: () => showTask(decodeURIComponent(location.hash.split("/")[1] || "")),
  };

  async function refresh() {
    try {
      await views[state.view]();
      problem(null);
      $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      problem(error.message);
    }
  }

  function route() {
    const name = (location.hash.slice(1) || "overview").split("/")[0];
    state.view = name in views ? name : "overview";
    for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + state.view;
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      if (link.dataset.view === state.view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    clearInterval(state.timer);
    refresh();
    if (state.view !== "task") state.timer = setInterval(refresh, REFRESH_MS);
  }

  async function act(button, method, url, question, done) {
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    try {
      done(await call(method, url));
      problem(null);
    } catch (error) {
      problem(error.message);
    } finally {
      button.disabled = false;
    }
  }

  function dashboard() {
    window.addEventListener("hashchange", route);
    $("dl-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      state.name = $("f-name").value.trim();
      state.error = $("f-error").value.trim();
      state.offset = 0;
      refresh();
    });
    $("dl-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); refresh(); });
    $("dl-next").addEventListener("click", () => { state.offset += PAGE_SIZE; refresh(); });
    $("replay-all").addEventListener("click", (event) => {
      const filter = new URLSearchParams({ name: state.name, error: state.error });
      const what = state.name || state.error ? "every dead letter matching the filter" : "every dead letter";
      act(event.target, "POST", "/ui/api/dead-letters/replay-all?" + filter, `Replay ${what} not replayed yet?`,
        (r) => { problem(null); $("refreshed").textContent = `replayed ${r.replayed}`; refresh(); });
    });
    $("purge").addEventListener("click", (event) => {
      act(event.target, "POST", "/ui/api/dead-letters/purge", "Delete every dead letter for good?", () => refresh());
    });
    $("task-form").addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = "task/" + encodeURIComponent($("task-id").value.trim());
    });
    const logout = $("logout");
    if (logout) {
      logout.addEventListener("click", (event) =>
        act(event.target, "POST", "/ui/logout", null, () => window.location.assign("/ui/login")));
    }
    route();
  }

  function deadLetter(record) {
    const id = record.dataset.recordId;
    const base = "/ui/api/dead-letters/" + encodeURIComponent(id);
    $("replay").addEventListener("click", (event) =>
      act(event.target, "POST", base + "/replay", null, (r) => {
        const outcome = $("outcome");
        outcome.replaceChildren(
          el("span", r.created ? "replayed as task " : "already replayed as task "),
          el("a", r.task_id, { href: "/ui#task/" + encodeURIComponent(r.task_id), id: "replayed-task" }),
        );
      }));
    $("delete").addEventListener("click", (event) =>
      act(event.target, "POST", base + "/delete", "Delete this dead letter for good?", () =>
        window.location.assign("/ui#dead-letters")));
  }

  const record = $("record");
  if (record) deadLetter(record);
  else if ($("view-overview")) dashboard();
})();
