// Starts a real `otpgate serve` for the worker tests, with keys the test knows: the receipt
// signing key (so a test can mint an expired receipt signed by the issuer's own key), the
// trusted-backend API key, and the test configuration e2e/otpgate-e2e.toml (a test number
// with a fixed code).

import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../../..");
export const TEST_NUMBER = "+15550100999";
export const TEST_CODE = "424242";

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function otpgateBin() {
  if (process.env.OTPGATE_BIN) {
    if (!existsSync(process.env.OTPGATE_BIN)) throw new Error(`OTPGATE_BIN=${process.env.OTPGATE_BIN} does not exist`);
    return process.env.OTPGATE_BIN;
  }
  const candidates = [
    process.env.CARGO_TARGET_DIR && path.join(process.env.CARGO_TARGET_DIR, "debug/otpgate"),
    path.join(ROOT, "target/debug/otpgate"),
    path.join(ROOT, "target/release/otpgate"),
  ].filter(Boolean);
  // The most recently built one: a stale binary elsewhere must not win.
  const found = candidates
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!found) {
    throw new Error(`no otpgate binary (tried ${candidates.join(", ")}): cargo build -p otpgate-server`);
  }
  return found;
}

/** The sms-gate.app webhook signing key the test issuer and the worker share. */
export const WEBHOOK_KEY = "e2e-webhook-signing-key-0123456789";

/** Starts the issuer; returns `{ url, apiKey, receiptKey (KeyObject), stop(), log() }`. */
export async function startIssuer() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const work = mkdtempSync(path.join(tmpdir(), "otpgate-worker-test-"));
  const config = path.join(work, "otpgate.toml");
  writeFileSync(
    config,
    readFileSync(path.join(ROOT, "e2e/otpgate-e2e.toml"), "utf8").replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`),
  );
  const { privateKey } = generateKeyPairSync("ed25519");
  const apiKey = randomBytes(24).toString("hex");
  let log = "";
  const child = spawn(
    otpgateBin(),
    ["serve", "--config", config, "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(work, "data")],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        OTPGATE_RECEIPT_KEY: privateKey.export({ format: "pem", type: "pkcs8" }),
        OTPGATE_E2E_API_KEY: apiKey,
        OTPGATE_E2E_WEBHOOK_KEY: WEBHOOK_KEY,
        OTPGATE_E2E_DEVICE_PASSWORD: randomBytes(12).toString("hex"),
        OTPGATE_PUBLIC_URL: url,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const exited = new Promise((r) => child.once("exit", r));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`otpgate serve exited (${child.exitCode}):\n${log}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`otpgate serve did not become healthy:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    apiKey,
    receiptKey: privateKey,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}
