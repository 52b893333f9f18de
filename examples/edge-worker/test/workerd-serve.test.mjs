// The shipped config.capnp under the standalone `workerd serve`, in front of a real
// `otpgate serve`: the configuration loads, secrets come from the environment, the worker
// reaches the issuer on 127.0.0.1 through the `net` service, and the cold start is measured
// (process start → first answer, and the first request that has to fetch the JWKS).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { freePort, startIssuer, TEST_CODE, TEST_NUMBER, workerdBin } from "../support/issuer.mjs";

const WORKER_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

let issuer;
let workerd;
let base;
let log = "";
let coldStartMs;
let firstAnswerMs;

before(async () => {
  issuer = await startIssuer();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  workerd = spawn(
    workerdBin(),
    ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${port}`],
    {
      cwd: WORKER_DIR,
      env: {
        ...process.env,
        OTPGATE_ISSUER: issuer.url,
        OTPGATE_AUDIENCE: "demo",
        OTPGATE_API_KEY: issuer.apiKey,
        SMSGATE_WEBHOOK_KEY: "workerd-serve-test-key-0123456789",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  workerd.stdout.on("data", (d) => { log += d; });
  workerd.stderr.on("data", (d) => { log += d; });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (workerd.exitCode !== null) throw new Error(`workerd exited (${workerd.exitCode}):\n${log}`);
    try {
      const t = performance.now();
      const r = await fetch(`${base}/protected`);
      await r.text();
      firstAnswerMs = performance.now() - t;
      coldStartMs = performance.now() - t0;
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`workerd did not answer:\n${log}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
});

after(async () => {
  if (workerd && workerd.exitCode === null) {
    const exited = new Promise((r) => workerd.once("exit", r));
    workerd.kill("SIGTERM");
    await exited;
  }
  await issuer?.stop();
});

test("workerd serve config.capnp: cold start, then the whole path through the worker", async () => {
  console.log(`# workerd serve: process start → first answer ${coldStartMs.toFixed(0)} ms (that request itself ${firstAnswerMs.toFixed(1)} ms)`);

  const started = await fetch(`${base}/api/start`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone: TEST_NUMBER }),
  });
  const v = await started.json();
  assert.equal(started.status, 201, JSON.stringify(v));
  const checked = await fetch(`${base}/api/check`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: v.id, code: TEST_CODE }),
  });
  const { receipt } = await checked.json();
  assert.equal(checked.status, 200);

  // First receipt check: fetches the JWKS from the issuer (cold cache).
  let t = performance.now();
  const first = await fetch(`${base}/protected`, { headers: { authorization: `Bearer ${receipt}` } });
  const firstBody = await first.json();
  const coldJwks = performance.now() - t;
  assert.equal(first.status, 200, JSON.stringify(firstBody));
  assert.equal(firstBody.phone_number, TEST_NUMBER);

  // Warm: the JWKS comes from module scope.
  const warm = [];
  for (let i = 0; i < 20; i++) {
    t = performance.now();
    const r = await fetch(`${base}/protected`, { headers: { authorization: `Bearer ${receipt}` } });
    await r.arrayBuffer();
    assert.equal(r.status, 200);
    warm.push(performance.now() - t);
  }
  warm.sort((a, b) => a - b);
  const bare = [];
  for (let i = 0; i < 20; i++) {
    t = performance.now();
    const r = await fetch(`${base}/protected`);
    await r.arrayBuffer();
    bare.push(performance.now() - t);
  }
  bare.sort((a, b) => a - b);
  console.log(`# workerd serve: warm median without a receipt (no verification) ${bare[10].toFixed(2)} ms`);
  console.log(`# workerd serve: first /protected with a receipt ${coldJwks.toFixed(1)} ms (JWKS fetched), warm median ${warm[10].toFixed(2)} ms`);

  const tampered = receipt.slice(0, -2) + (receipt.endsWith("A") ? "BB" : "AA");
  const refused = await fetch(`${base}/protected`, { headers: { authorization: `Bearer ${tampered}` } });
  assert.equal(refused.status, 401);
});
