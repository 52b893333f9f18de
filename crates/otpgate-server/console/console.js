// The otpgate operator console: polls the admin JSON API (same origin, session cookie) and
// draws the fleet, the charts (uPlot) and the recent verifications. No secret and no full
// number ever reaches this page: the API sends pseudonyms and shortened ids only.
"use strict";

(() => {
  const BASE = document.querySelector('meta[name="otpgate-base"]').content;
  const PALETTE = ["#1f5fbf", "#c2410c", "#0f766e", "#7e22ce", "#b91c1c", "#4d7c0f", "#a16207", "#0e7490"];
  const charts = {};

  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  };
  const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "never");
  const pct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)} %`);
  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`);

  async function api(path) {
    const res = await fetch(`${BASE}/api/${path}`, { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) {
      // The session ended: back to the login form.
      window.location.assign(`${BASE}/`);
      throw new Error("logged out");
    }
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  }

  function meter(label, used, limit) {
    const id = `m${Math.random().toString(36).slice(2)}`;
    const known = used !== null && used !== undefined;
    const text = limit > 0 ? `${known ? used : "?"} / ${limit}` : `${known ? used : "?"} (no cap)`;
    const wrap = el("div", { class: "bar" },
      el("div", { class: "bar-label" }, el("span", { id }, label), el("span", {}, text)));
    if (limit > 0) {
      wrap.append(el("meter", {
        min: "0", max: String(limit), value: String(known ? Math.min(used, limit) : 0),
        low: String(Math.floor(limit * 0.7)), high: String(Math.floor(limit * 0.9)), optimum: "0",
        "aria-labelledby": id,
      }));
    }
    return wrap;
  }

  function deviceCard(d) {
    const down = d.state !== "up";
    const card = el("article", {
      class: `card${down ? " down" : ""}`, "data-device": d.name, "data-state": d.state,
      "aria-label": `${d.name}: ${down ? "down" : "up"}`,
    });
    const sim = d.sim ? ` · SIM ${d.sim}` : "";
    card.append(el("h3", {}, d.name,
      el("span", { class: `badge${down ? " down" : ""}` }, down ? "Down" : "Up"),
      el("span", { class: "muted small" }, `${d.kind}${d.fallback ? " (fallback)" : ""}${sim}`)));
    if (down) card.append(el("p", { class: "reason", "data-reason": "" }, d.reason || "down"));
    card.append(meter(`This ${d.budget_window_secs === 60 ? "minute" : `${d.budget_window_secs} s window`}`,
      d.used_window, d.budget_per_window));
    card.append(d.daily_cap > 0 ? meter("Today", d.used_today, d.daily_cap) : meter("Sent today (this instance)", d.sent_today, 0));
    const kv = el("dl", { class: "kv" });
    const add = (k, v) => kv.append(el("dt", {}, k), el("dd", {}, v));
    add("Breaker", d.breaker_open_until_ms
      ? `open until ${time(d.breaker_open_until_ms)}`
      : `closed (${d.breaker_failures}/${d.breaker_threshold} failures)`);
    add("Health", d.last_health ? `${d.last_health.up ? "healthy" : "failed"} at ${time(d.last_health.at_ms)}` : (d.healthy ? "healthy" : "failed"));
    const h = d.health;
    if (h && (h.battery_pct != null || h.online != null)) {
      const parts = [];
      if (h.battery_pct != null) parts.push(`battery ${h.battery_pct} %${h.charging ? " (charging)" : ""}`);
      if (h.online != null) parts.push(h.online ? "online" : "no internet");
      if (h.failed_messages != null) parts.push(`${h.failed_messages} failed`);
      add("Phone", parts.join(" · "));
    }
    add("Last error", d.last_error ? `${d.last_error.reason} (${time(d.last_error.at_ms)})` : "none");
    add("Delivered, 1 h", `${pct(d.h1.success_ratio)} of ${d.h1.delivered + d.h1.failed} · p50 ${ms(d.h1.latency_p50_ms)} · p99 ${ms(d.h1.latency_p99_ms)}`);
    add("Delivered, 24 h", `${pct(d.h24.success_ratio)} of ${d.h24.delivered + d.h24.failed} · p50 ${ms(d.h24.latency_p50_ms)} · p99 ${ms(d.h24.latency_p99_ms)}`);
    card.append(kv);
    return card;
  }

  async function refreshFleet() {
    const f = await api("fleet");
    const box = document.getElementById("fleet");
    box.replaceChildren(...f.devices.map(deviceCard));
    const down = f.devices.filter((d) => d.state !== "up").length;
    document.getElementById("fleet-summary").textContent = f.devices.length === 0
      ? "No gateway devices are configured."
      : `${f.devices.length - down} of ${f.devices.length} up · ${f.queue_waiting} waiting for capacity · health checked every ${f.health_interval_secs} s`;
    document.getElementById("instance").textContent =
      `Instance up since ${new Date(f.instance_started_at_ms).toLocaleString()} · updated ${time(f.generated_at_ms)}`;
  }

  function drawChart(id, t, series) {
    const host = document.getElementById(id);
    const names = series.map((s) => s.label).join("|");
    const width = Math.max(host.clientWidth - 4, 200);
    const data = [t, ...series.map((s) => s.values)];
    const c = charts[id];
    if (c && c.names === names) {
      c.plot.setData(data);
      if (Math.abs(c.plot.width - width) > 2) c.plot.setSize({ width, height: 180 });
      return;
    }
    if (c) c.plot.destroy();
    host.replaceChildren();
    if (series.length === 0) {
      host.append(el("p", { class: "empty" }, "Nothing yet."));
      delete charts[id];
      return;
    }
    const plot = new uPlot({
      width, height: 180,
      scales: { x: { time: true } },
      axes: [{}, { size: 48 }],
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: s.spanGaps || false,
      }))],
    }, data, host);
    charts[id] = { plot, names };
  }

  async function refreshSeries() {
    const s = await api("series?minutes=30");
    const per = (obj) => Object.entries(obj).map(([label, values]) => ({ label, values }));
    drawChart("c-sends", s.t, per(s.sends_per_min));
    drawChart("c-latency", s.t, [
      { label: "p50", values: s.latency_p50_ms },
      { label: "p99", values: s.latency_p99_ms },
    ]);
    drawChart("c-flow", s.t, [
      { label: "starts", values: s.starts_per_min },
      { label: "approvals", values: s.approvals_per_min },
    ]);
    drawChart("c-pow", s.t, [{ label: "bits", values: s.pow_bits, spanGaps: true }]);
    drawChart("c-refusals", s.t, per(s.refusals_per_min));
    drawChart("c-store", s.t, [{ label: "ping", values: s.store_ms, spanGaps: true }]);
  }

  const GOOD = new Set(["sms.delivered", "check.approved"]);
  const BAD = new Set(["sms.failed", "check.rejected", "verification.expired", "verification.cancelled"]);

  async function refreshRecent() {
    const r = await api("verifications?limit=20");
    const rows = r.verifications.map((v) => {
      const tl = el("td", { class: "timeline" });
      for (const e of v.timeline) {
        const cls = GOOD.has(e.event) ? " good" : BAD.has(e.event) ? " bad" : "";
        const after = ((e.at_ms - v.started_at_ms) / 1000).toFixed(1);
        const extra = [e.gateway, e.reason].filter(Boolean).join(": ");
        tl.append(el("span", { class: `tl${cls}` }, `+${after} s ${e.event}${extra ? ` (${extra})` : ""}`));
      }
      return el("tr", {},
        el("td", {}, time(v.started_at_ms)),
        el("td", {}, el("code", {}, v.id)),
        el("td", {}, el("code", {}, v.phone || "–")),
        el("td", {}, v.state),
        tl);
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No verification since this instance started.")));
    }
    document.querySelector("#recent tbody").replaceChildren(...rows);
  }

  async function refreshAudit() {
    const a = await api("audit");
    const dl = document.getElementById("audit");
    const items = [];
    const add = (k, v) => items.push(el("dt", {}, k), el("dd", {}, v));
    add("Log", a.enabled ? `${a.file} · ${a.head_seq} lines · head ${a.head}… · writer ${a.writer}` : "disabled");
    add("Retention", `${a.retention_days} days`);
    if (a.anchor) {
      add("Anchors", `${a.anchor.sink} every ${a.anchor.every_secs} s`);
      add("Last export", `${time(a.anchor.last_success_ms)}${a.anchor.stale ? " (STALE)" : ""}`);
      if (a.anchor.last_error) add("Last export error", `${a.anchor.last_error.reason} (${time(a.anchor.last_error.at_ms)})`);
    } else {
      add("Anchors", "not exported ([audit] anchor is not set)");
    }
    dl.replaceChildren(...items);
  }

  function every(ms, fn) {
    const run = () => fn().catch((e) => console.warn(e.message)).finally(() => setTimeout(run, ms));
    run();
  }

  every(2000, refreshFleet);
  every(5000, refreshSeries);
  every(4000, refreshRecent);
  every(15000, refreshAudit);
  window.addEventListener("resize", () => refreshSeries().catch(() => {}));
})();
