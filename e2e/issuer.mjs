// The issuer under test, shared by the browser end-to-end tests (helpers.mjs) and the edge
// worker's tests (examples/edge-worker/support/issuer.mjs): a free port, the `otpgate` binary
// the last build made, and a real `otpgate serve` started from the repository root (so it
// serves www/), waited for on /healthz and stopped at the end. No npm dependency.

import { spawn } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A free TCP port on 127.0.0.1. */
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

/** The `otpgate` binary: OTPGATE_BIN, else the newest of $CARGO_TARGET_DIR/debug, target/debug, target/release. */
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

/**
 * Runs `otpgate serve <args>` from the repository root with `env` as its whole environment and
 * waits until `${url}/healthz` answers (at most `timeoutMs`). Returns `{ log(), stop() }`:
 * `log` is its stdout and stderr so far; `stop` ends it (SIGTERM, SIGKILL after 5 s), then
 * removes the directory `remove` when one is given.
 */
export async function serve({ url, args, env, timeoutMs = 20_000, remove }) {
  let log = "";
  const child = spawn(otpgateBin(), ["serve", ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const exited = new Promise((r) => child.once("exit", r));
  const deadline = Date.now() + timeoutMs;
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
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      if (remove) rmSync(remove, { recursive: true, force: true });
    },
  };
}
