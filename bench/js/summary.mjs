// The one table of scripts/bench.sh, from the raw JSON figures the sections wrote.
//
//   node bench/js/summary.mjs --criterion DIR        criterion's output → JSON (messages/s)
//   node bench/js/summary.mjs --raw DIR [--md FILE] [--quick 0|1] [--sections "core issuer ..."]
//
// Every row: section | figure | value | bar, or a peer measured in the same run | verdict.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { arg } from "./args.mjs";

// ---- criterion → JSON -------------------------------------------------------------------
const critDir = arg("--criterion", null);
if (critDir) {
  const out = {};
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (!e.isDirectory()) continue;
      if (e.name === "new" && existsSync(path.join(p, "benchmark.json"))) {
        const b = JSON.parse(readFileSync(path.join(p, "benchmark.json"), "utf8"));
        const est = JSON.parse(readFileSync(path.join(p, "estimates.json"), "utf8"));
        const elements = b.throughput?.Elements ?? 1;
        const ns = est.mean.point_estimate;
        out[b.full_id ?? `${b.group_id}/${b.function_id}`] = {
          ns_per_iter: ns,
          elements,
          per_s: (elements * 1e9) / ns,
        };
      } else if (e.name !== "report" && e.name !== "base" && e.name !== "change") {
        walk(p);
      }
    }
  };
  walk(critDir);
  if (Object.keys(out).length === 0) {
    console.error(`no criterion results under ${critDir}`);
    process.exit(1);
  }
  console.log(JSON.stringify(out, null, 2));
  process.exit(0);
}

// ---- the table --------------------------------------------------------------------------
const RAW = arg("--raw", "target/bench/raw");
const MD = arg("--md", null);
const QUICK = arg("--quick", "0") === "1";
const SECTIONS = arg("--sections", "core issuer flood gateway client").split(/\s+/);
const load = (name) => {
  const p = path.join(RAW, `${name}.json`);
  try {
    return JSON.parse(readFileSync(p, "utf8"));
  } catch {
    return null;
  }
};

const rows = [];
const row = (section, figure, value, against, verdict = "") => rows.push([section, figure, value, against, verdict]);
const missing = (section, what) => row(section, what, "no figures", "the section failed: see its log above", "ERROR");

const mps = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M/s` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k/s` : `${x.toFixed(0)}/s`);
const int = (x) => Math.round(x).toLocaleString("en-US");
const ms = (x) => (x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`);
const bar = (ok) => (ok ? "PASS" : "MISS");
const mix = (m) =>
  Object.entries(m ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}:${int(v)}`)
    .join(" ");
/** A run-length series: `0x12 6x3 12x45` = 12 s at 0 bits, 3 s at 6, 45 s at 12. */
const rle = (xs) => {
  const out = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && last[0] === x) last[1]++;
    else out.push([x, 1]);
  }
  return out.map(([v, n]) => `${v < 0 ? "?" : v}x${n}`).join(" ");
};

// core
if (SECTIONS.includes("core")) {
  const nat = load("core-native");
  const node = load("core-node");
  if (!nat) missing("core", "native parse/segments/compose");
  else {
    const g = (k) => nat[k]?.per_s ?? NaN;
    const parse = g("cpu/parse/mix");
    row("core", "parse, native (1 thread, CPU time)", mps(parse), "bar >= 2 M/s", bar(parse >= 2e6));
    row("core", "parse, native (wall clock)", mps(g("parse/mix")), `no-alloc parse_ref: ${mps(g("cpu/parse/mix_no_alloc"))} CPU`);
    row("core", "segments, native (CPU time)", mps(g("cpu/segments/mix")), `parse: ${mps(parse)}`);
    row("core", "compose, native (CPU time)", mps(g("cpu/compose/full_layout")), `parse: ${mps(parse)}`);
  }
  if (!node) missing("core", "Node through the npm package");
  else {
    const v = `Node ${node.node}`;
    row("core", `parseSms, ${v} via npm pkg (CPU)`, mps(node.parse.wasm.cpu_per_s),
      `pure-JS regex peer: ${mps(node.parse.js_regex.cpu_per_s)} (x${(node.parse.wasm.cpu_per_s / node.parse.js_regex.cpu_per_s).toFixed(2)})`);
    row("core", `smsSegments, ${v} (CPU)`, mps(node.segments.wasm.cpu_per_s),
      `pure-JS GSM table peer: ${mps(node.segments.js_table.cpu_per_s)} (x${(node.segments.wasm.cpu_per_s / node.segments.js_table.cpu_per_s).toFixed(2)})`);
    row("core", `composeSms, ${v} (CPU)`, mps(node.compose.wasm.cpu_per_s),
      nat ? `native compose: ${mps(nat["cpu/compose/full_layout"]?.per_s ?? NaN)}` : "");
  }
}

// issuer
if (SECTIONS.includes("issuer")) {
  const meta = load("issuer-meta") ?? {};
  const aof = meta.redis_aof ?? "no";
  const redisDur = aof === "no" ? "Redis: no RDB/AOF, in memory" : `Redis: AOF appendfsync ${aof}`;
  const stores = [
    ["embedded", "embedded x1", "durability disk: answered after fsync", { start: 5000, check: 15000 }],
    ["embedded-process", "embedded x1", "durability process: answered after write, fsync <= 200 ms later; survives kill -9, not power loss", { start: 5000, check: 15000 }],
    ["redis", "Redis x2", `${redisDur}; audit log disk`, { start: null, check: 10000 }],
    ["redis-audit-process", "Redis x2", `${redisDur}; audit log process: answered after write`, { start: null, check: 10000 }],
  ];
  const levels = {
    embedded: (meta.embedded_durability ?? "disk process").split(/\s+/),
    redis: (meta.redis_audit_durability ?? "disk process").split(/\s+/),
  };
  const ran = ([key]) => levels[key.startsWith("redis") ? "redis" : "embedded"]
    .includes(key.endsWith("process") ? "process" : "disk");
  for (const [key, label, durability, bars] of stores.filter(ran)) {
    const r = load(`issuer-${key}`);
    if (!r) {
      missing("issuer", `${label}`);
      continue;
    }
    const h = r.health;
    // The machine's CPU time during the phase: on a shared VM the hypervisor's steal says
    // how much of the 2 CPUs the run really had.
    const cpu = (x) => (x.cpu ? `CPU busy ${x.cpu.busy_pct}%, stolen ${x.cpu.steal_pct}%` : "");
    const peer = h ? `/healthz, same ${key.startsWith("redis") ? "servers" : "server"}: ${int(h.requests_per_s)}/s p99 ${ms(h.p99_ms)} (${cpu(h) || "CPU n/a"})` : "";
    const other = (x) => (Object.keys(x.other ?? {}).length ? `; unexpected ${mix(x.other)}` : "");
    for (const [phase, name] of [["start", "starts/s"], ["check", "checks/s"]]) {
      const x = r[phase];
      if (!x) continue;
      const b = bars[phase];
      row(
        "issuer",
        `${label} ${name} (${durability})`,
        `${int(x.requests_per_s)}/s p50 ${ms(x.p50_ms)} p99 ${ms(x.p99_ms)}`,
        `${b ? `bar >= ${int(b)}/s; ` : ""}${peer}${other(x)}${x.cpu ? `; this phase: ${cpu(x)}` : ""}`,
        b ? bar(x.requests_per_s >= b && !Object.keys(x.other ?? {}).length) : "",
      );
    }
  }
}

// flood
if (SECTIONS.includes("flood")) {
  const f = load("flood");
  const meta = load("flood-meta") ?? {};
  if (!f) missing("flood", "SMS-pumping flood");
  else {
    const l = f.legit;
    const o = f.outbox;
    row("flood", `legit users start->approved (${l.users} users)`, `p50 ${ms(l.p50_ms)} p99 ${ms(l.p99_ms)}`,
      `PoW solved (bits:users) ${mix(Object.fromEntries(Object.entries(l.pow_bits).map(([b, n]) => [b, n])))}; solve p50 ${ms(l.pow_p50_ms)} max ${ms(l.pow_max_ms)}`);
    // #21's bars: at most one legitimate user in 30 lost, fewer attacker SMS than 9.
    const legitBar = Math.ceil((l.users * 29) / 30);
    row("flood", "legit success rate (one try each)", `${(l.success_rate * 100).toFixed(1)}% (${l.approved}/${l.users})`,
      `bar >= ${legitBar}/${l.users}; results ${mix(l.results)}`, bar(l.approved >= legitBar));
    row("flood", `attacker requests (${f.attacker_addresses} addresses, ${f.attack_concurrency} in flight)`,
      `${int(f.attack.requests_per_s)}/s`, `answers ${mix(f.attack.answers)}; ${int(f.attack.solved_challenges)} challenges <= ${f.attacker_pow_bits} bits solved`);
    for (const [kind, m] of Object.entries(f.attack.by_kind)) {
      row("flood", `  attacker answers: ${kind}`, int(Object.values(m).reduce((a, b) => a + b, 0)), mix(m));
    }
    const sub = f.gateway.submitted ?? 0;
    row("flood", "sends reaching the phone: total", String(o.total),
      `phone budget ${meta.phone_budget_per_min ?? "?"}/min, ${f.duration_s.toFixed(0)} s flood; gateway submitted ${sub}`);
    row("flood", "  to legitimate users", String(o.legit), `${l.users} users came`);
    row("flood", "  to attacker numbers in allowed countries", String(o.attack_allowed_countries),
      `bar < 9; premium-rate ranges ${o.attack_premium_rate ?? "?"}, sequential ${o.attack_sequential ?? "?"}`,
      bar(o.attack_allowed_countries < 9));
    row("flood", "  to blocked countries", String(o.blocked_countries),
      `must be 0 (outbox; ${o.unknown} to unknown numbers, must be 0)`,
      o.blocked_countries === 0 && o.unknown === 0 ? "PASS" : "FAIL");
    row("flood", "PoW difficulty, bits per second (value x s)", rle(f.pow_series), `max ${f.pow_max}`);
  }
}

// gateway
if (SECTIONS.includes("gateway")) {
  const g = load("gateway");
  if (!g) missing("gateway", "ten phones at their budgets");
  else {
    row("gateway", `delivered / sum of budgets (${g.phones} phones x ${g.budget_per_window} per ${g.window_secs} s, ${g.windows} windows)`,
      `${g.delivered_share_pct.toFixed(1)}% (${g.delivered}/${g.budget_sum})`, `bar >= 95%; offered ${g.offered} at 2x capacity, refused fast ${g.refused_no_capacity}`, bar(g.delivered_share_pct >= 95));
    row("gateway", "expired sends", String(g.expired_sends), "must be 0", g.expired_sends === 0 ? "PASS" : "FAIL");
    row("gateway", "duplicate sends", String(g.duplicates), "must be 0", g.duplicates === 0 ? "PASS" : "FAIL");
    row("gateway", "windows over a phone's budget", String(g.windows_over_budget), "must be 0", g.windows_over_budget === 0 ? "PASS" : "FAIL");
  }
}

// client
if (SECTIONS.includes("client")) {
  const s = load("client-size");
  const c = load("client-cold");
  if (!s) missing("client", "npm package size");
  else {
    row("client", "npm package: wasm + JS glue + node entry, gzip -9", `${(s.gzip / 1024).toFixed(1)} KB`,
      `bar <= 80 KB gz; raw ${(s.raw / 1024).toFixed(1)} KB`, bar(s.gzip <= 80 * 1024));
  }
  if (!c) missing("client", "cold instantiation");
  else {
    row("client", `Node ${c.node}: import + instantiate, new process (median of ${c.runs})`, ms(c.node_import.median_ms),
      `process spawn->exit ${ms(c.node_process.median_ms)} vs bare node ${ms(c.node_bare_process.median_ms)}`);
    if (c.workerd_edge_worker) {
      row("client", `workerd: spawn->first answer, new isolate (median of ${c.runs})`, ms(c.workerd_edge_worker.median_ms),
        `hello-world worker, no wasm: ${ms(c.workerd_hello.median_ms)} (difference ${(c.workerd_edge_worker.median_ms - c.workerd_hello.median_ms).toFixed(1)} ms)`);
    }
  }
}

// ---- render -------------------------------------------------------------------------------
const head = ["section", "figure", "value", "bar / peer (same run)", "verdict"];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
const load1 = os.loadavg().map((x) => x.toFixed(2)).join(" ");
const title = `otpgate bench ${new Date().toISOString().replace(/\..*/, "Z")}${QUICK ? " (QUICK)" : ""}: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), load average ${load1}`;
const fails = rows.filter((r) => r[4] === "FAIL" || r[4] === "ERROR").length;
process.on("exit", () => {
  if (fails) process.exitCode = 1;
});
console.log(title);
console.log(line(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows) console.log(line(r));

if (MD) {
  const esc = (c) => c.replaceAll("|", "\\|");
  const md = [
    `# otpgate benchmarks`,
    "",
    title,
    "",
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
    "",
    "Produced by `scripts/bench.sh`; raw figures in `raw/`.",
    "",
  ].join("\n");
  writeFileSync(MD, md);
}
