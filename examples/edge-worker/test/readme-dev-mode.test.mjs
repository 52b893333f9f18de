// The README's "Run it locally with workerd", as a new user runs it: the issuer in dev mode
// (no configuration; its data directory holds the dev API key it wrote), the worker under
// the standalone `workerd serve config.capnp` with the key read from that file, then the
// README's curl steps: start with +1 415 555 0123, read the SMS from the dev phone's outbox,
// check the code, call /protected with the receipt.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { serve } from "../../../e2e/issuer.mjs";
import { freePort, workerdBin } from "../support/issuer.mjs";

const WORKER_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const PHONE = "+14155550123";

let issuer;
let issuerUrl;
let workerd;
let base;
let apiKey;
let log = "";

before(async () => {
  const port = await freePort();
  issuerUrl = `http://127.0.0.1:${port}`;
  const work = mkdtempSync(path.join(tmpdir(), "otpgate-worker-readme-"));
  const data = path.join(work, "otpgate-data");
  // Dev mode: no --config, as scripts/run.sh starts it (another port and data dir).
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("OTPGATE_")) delete env[k];
  issuer = await serve({
    url: issuerUrl,
    args: ["--listen", `127.0.0.1:${port}`, "--data-dir", data],
    env,
    timeoutMs: 30_000,
    remove: work,
  });
  const keyFile = path.join(data, "dev-api-key");
  assert.equal(statSync(keyFile).mode & 0o777, 0o600, "the dev key is owner-only");
  apiKey = readFileSync(keyFile, "utf8").trim();
  assert.ok(issuer.log().includes("dev-api-key"), "the log names the file");
  assert.ok(!issuer.log().includes(apiKey), "the log never holds the key");

  const wport = await freePort();
  base = `http://127.0.0.1:${wport}`;
  workerd = spawn(workerdBin(), ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${wport}`], {
    cwd: WORKER_DIR,
    env: {
      ...process.env,
      OTPGATE_ISSUER: issuerUrl,
      OTPGATE_AUDIENCE: "demo",
      OTPGATE_API_KEY: apiKey,
      SMSGATE_WEBHOOK_KEY: "any-local-secret",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  workerd.stdout.on("data", (d) => { log += d; });
  workerd.stderr.on("data", (d) => { log += d; });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (workerd.exitCode !== null) throw new Error(`workerd exited (${workerd.exitCode}):\n${log}`);
    try {
      await (await fetch(`${base}/protected`)).text();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`workerd did not answer:\n${log}`);
      await new Promise((r) => setTimeout(r, 20));
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

test("the README's steps against a dev-mode issuer: start, SMS, check, /protected", async () => {
  const started = await fetch(`${base}/api/start`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone: PHONE }),
  });
  const v = await started.json();
  assert.equal(started.status, 201, `${JSON.stringify(v)}\n${log}`);

  // The SMS the dev phone "sent", with the WebOTP line for the dev origin.
  let text;
  const deadline = Date.now() + 10_000;
  while (!text) {
    const list = await (await fetch(`${issuerUrl}/_emulator/messages?phone=${encodeURIComponent(PHONE)}`)).json();
    text = list.at?.(-1)?.text;
    if (!text) {
      assert.ok(Date.now() < deadline, "no SMS reached the dev phone");
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const webotp = text.trim().split("\n").at(-1);
  assert.match(webotp, /^@localhost #\d{6}$/);
  const code = webotp.split("#")[1];

  const checked = await fetch(`${base}/api/check`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: v.id, code }),
  });
  const body = await checked.json();
  assert.equal(checked.status, 200, JSON.stringify(body));
  const prot = await fetch(`${base}/protected`, { headers: { authorization: `Bearer ${body.receipt}` } });
  const claims = await prot.json();
  assert.equal(prot.status, 200, JSON.stringify(claims));
  assert.equal(claims.phone_number, PHONE);
});
