// Starts a real `otpgate serve` for the worker tests, with keys the test knows: the receipt
// signing key (so a test can mint an expired receipt signed by the issuer's own key), the
// trusted-backend API key, and the test configuration e2e/otpgate-e2e.toml (a test number
// with a fixed code). Port, binary and process handling are the browser tests' own
// (e2e/issuer.mjs).

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, freePort, serve } from "../../../e2e/issuer.mjs";

export { ROOT, freePort, otpgateBin } from "../../../e2e/issuer.mjs";
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TEST_NUMBER = "+14155550199";
export const TEST_CODE = "424242";

/** The sms-gate.app webhook signing key the test issuer and the worker share. */
export const WEBHOOK_KEY = "e2e-webhook-signing-key-0123456789";

/**
 * The standalone `workerd` this example pins (package.json), wherever npm placed it in the
 * workspace (the root node_modules, or this folder's when another version took the root).
 */
export function workerdBin() {
  return createRequire(path.join(HERE, "../package.json")).resolve("workerd/bin/workerd");
}

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
  const issuer = await serve({
    url,
    args: ["--config", config, "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(work, "data")],
    env: {
      ...process.env,
      OTPGATE_RECEIPT_KEY: privateKey.export({ format: "pem", type: "pkcs8" }),
      OTPGATE_E2E_API_KEY: apiKey,
      OTPGATE_E2E_WEBHOOK_KEY: WEBHOOK_KEY,
      OTPGATE_E2E_DEVICE_PASSWORD: randomBytes(12).toString("hex"),
      OTPGATE_PUBLIC_URL: url,
    },
    timeoutMs: 30_000,
    remove: work,
  });
  return { url, apiKey, receiptKey: privateKey, ...issuer };
}
