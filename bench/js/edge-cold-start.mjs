// Cold start of the edge-worker example (examples/edge-worker) under the standalone
// `workerd serve config.capnp`: N fresh processes, each timed from spawn to its first answer
// (a /protected without a receipt: the module, the 200 KB wasm and initSync, no network),
// then a warm request on the same process.
//   node bench/js/edge-cold-start.mjs [runs=10]     (after examples/edge-worker/build.sh)
import { spawn } from "node:child_process";
import net from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../examples/edge-worker");
// The example's pinned workerd, wherever npm placed it in the workspace.
const WORKERD = createRequire(path.join(DIR, "package.json")).resolve("workerd/bin/workerd");
const runs = Number(process.argv[2] || 10);

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const cold = [];
const first = [];
const warm = [];
for (let i = 0; i < runs; i++) {
  const port = await freePort();
  const t0 = performance.now();
  const p = spawn(WORKERD, ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${port}`], {
    cwd: DIR,
    env: { ...process.env, OTPGATE_ISSUER: "http://127.0.0.1:9", OTPGATE_AUDIENCE: "demo" },
    stdio: "ignore",
  });
  for (;;) {
    try {
      const t = performance.now();
      const r = await fetch(`http://127.0.0.1:${port}/protected`);
      await r.arrayBuffer();
      first.push(performance.now() - t);
      cold.push(performance.now() - t0);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const t = performance.now();
  await (await fetch(`http://127.0.0.1:${port}/protected`)).arrayBuffer();
  warm.push(performance.now() - t);
  const exited = new Promise((r) => p.once("exit", r));
  p.kill();
  await exited;
}
console.log(`workerd cold start over ${runs} runs: spawn → first answer median ${median(cold).toFixed(0)} ms ` +
  `(min ${Math.min(...cold).toFixed(0)}, max ${Math.max(...cold).toFixed(0)}); ` +
  `the first request itself median ${median(first).toFixed(1)} ms; the next one ${median(warm).toFixed(2)} ms`);
