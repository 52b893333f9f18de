// Cold instantiation of the npm package's wasm, median of several runs:
// - Node, a new process each run: the time `await import("pkg/node.mjs")` takes inside it (read
//   the .wasm, compile, instantiate, load the glue), and spawn → exit of that process beside
//   spawn → exit of a bare `node -e ""` (the peer: what any Node process costs);
// - workerd, a new process (so a new isolate) each run: spawn → first answer of the edge-worker
//   example (examples/edge-worker: the worker module + the package's wasm, initSync at module
//   scope; GET /protected without a receipt needs no network) beside the same for a
//   hello-world worker without wasm (the peer), both under the same `workerd serve`.
//
//   node bench/js/client-cold.mjs [--runs N] [--pkg DIR] [--json FILE] [--no-workerd]
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT, arg } from "./args.mjs";

const RUNS = Number(arg("--runs", "9"));
const PKG = path.resolve(arg("--pkg", path.join(ROOT, "pkg")));
const JSON_OUT = arg("--json", null);
const EDGE = path.join(ROOT, "examples/edge-worker");
// The example's pinned workerd, wherever npm placed it in the workspace.
const WORKERD = (() => {
  try {
    return createRequire(path.join(EDGE, "package.json")).resolve("workerd/bin/workerd");
  } catch {
    return path.join(ROOT, "node_modules/.bin/workerd");
  }
})();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};
const stats = (xs) => ({ median_ms: median(xs), min_ms: Math.min(...xs), max_ms: Math.max(...xs), runs: xs.length });

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], ...opts });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
    p.on("error", reject);
    p.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${cmd} exited with ${code}`));
      else resolve({ ms: performance.now() - t0, out });
    });
  });
}

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Spawns workerd on `config` (cwd `dir`) and times spawn → first HTTP answer on `route`. */
async function workerdCold(dir, config, route, env) {
  const port = await freePort();
  const t0 = performance.now();
  const p = spawn(WORKERD, ["serve", config, "--socket-addr", `http=127.0.0.1:${port}`], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: "ignore",
  });
  try {
    for (;;) {
      if (performance.now() - t0 > 20_000) throw new Error(`workerd (${config}) did not answer in 20 s`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}${route}`);
        await r.arrayBuffer();
        return performance.now() - t0;
      } catch {
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } finally {
    const exited = new Promise((r) => p.once("exit", r));
    p.kill();
    await exited;
  }
}

const out = { node: process.version, runs: RUNS };

// ---- Node -----------------------------------------------------------------------------
const entry = pathToFileURL(path.join(PKG, "node.mjs")).href;
const script = `const t=performance.now();const m=await import(${JSON.stringify(entry)});` +
  `const ms=performance.now()-t;if(typeof m.parseSms!=="function")process.exit(3);console.log(ms)`;
const imports = [];
const procs = [];
const bare = [];
await run(process.execPath, ["--input-type=module", "-e", script]); // discarded (page cache)
for (let i = 0; i < RUNS; i++) {
  const b = await run(process.execPath, ["-e", ""]);
  bare.push(b.ms);
  const r = await run(process.execPath, ["--input-type=module", "-e", script]);
  procs.push(r.ms);
  imports.push(Number(r.out.trim()));
}
out.node_import = stats(imports);
out.node_process = stats(procs);
out.node_bare_process = stats(bare);
console.error(
  `node: import of the package (read + compile + instantiate) median ${median(imports).toFixed(1)} ms; ` +
    `process spawn→exit ${median(procs).toFixed(0)} ms vs bare node ${median(bare).toFixed(0)} ms`,
);

// ---- workerd --------------------------------------------------------------------------
if (!process.argv.includes("--no-workerd")) {
  if (!existsSync(WORKERD)) throw new Error(`${WORKERD} missing: run scripts/setup.sh (npm ci at the repository root)`);
  if (!existsSync(path.join(EDGE, "pkg/otpgate_bg.wasm"))) {
    throw new Error("examples/edge-worker/pkg missing: run examples/edge-worker/build.sh");
  }
  const peerDir = mkdtempSync(path.join(os.tmpdir(), "otpgate-hello-"));
  try {
    writeFileSync(
      path.join(peerDir, "hello.mjs"),
      'export default { async fetch() { return new Response("hello", { status: 200 }); } };\n',
    );
    writeFileSync(
      path.join(peerDir, "config.capnp"),
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .w) ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "main") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "hello.mjs", esModule = embed "hello.mjs") ],
  compatibilityDate = "2025-09-01",
);
`,
    );
    const env = { OTPGATE_ISSUER: "http://127.0.0.1:9", OTPGATE_AUDIENCE: "demo" };
    const edge = [];
    const hello = [];
    // One discarded run of each (page cache), then alternate which goes first.
    await workerdCold(peerDir, "config.capnp", "/", {});
    await workerdCold(EDGE, "config.capnp", "/protected", env);
    for (let i = 0; i < RUNS; i++) {
      const pair = [
        async () => hello.push(await workerdCold(peerDir, "config.capnp", "/", {})),
        async () => edge.push(await workerdCold(EDGE, "config.capnp", "/protected", env)),
      ];
      if (i % 2) pair.reverse();
      for (const f of pair) await f();
    }
    out.workerd_edge_worker = stats(edge);
    out.workerd_hello = stats(hello);
    console.error(
      `workerd: spawn→first answer, edge worker with the wasm median ${median(edge).toFixed(0)} ms ` +
        `vs hello-world worker ${median(hello).toFixed(0)} ms`,
    );
  } finally {
    rmSync(peerDir, { recursive: true, force: true });
  }
}

const text = JSON.stringify(out, null, 2);
if (JSON_OUT && JSON_OUT !== "-") writeFileSync(JSON_OUT, text);
else console.log(text);
