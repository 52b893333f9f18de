// Expiry and rate limits in a real browser. These need a short code lifetime and a small
// budget, so this file starts its own `otpgate serve` with e2e/otpgate-e2e.toml (lifetime 60 s,
// the policy's minimum; 2 codes per number per 10 min; a test number with a fixed code).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { HERE, freePort, otpgateBin, withDemo, freshPhone, screenshot, startServer, typeCode } from "./helpers.mjs";

const TEST_NUMBER = { national: "4155550199", e164: "+14155550199" };
const TEST_CODE = "424242";

let server;
let work;
let emulator;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "otpgate-e2e-cfg-"));
  const port = await freePort();
  // A real emulated phone (`otpgate emulator`) stands in for the config's device, so sends
  // really leave and the per-phone budget is spent by delivered codes (a send that never
  // leaves gives its budget back).
  const emuPort = await freePort();
  const devicePassword = randomBytes(12).toString("hex");
  const webhookKey = randomBytes(24).toString("hex");
  emulator = spawn(
    otpgateBin(),
    [
      "emulator", "--listen", `127.0.0.1:${emuPort}`, "--password", devicePassword,
      "--signing-key", webhookKey, "--webhook", `http://127.0.0.1:${port}/v1/gateways/sms-gate/webhook`,
    ],
    { stdio: "ignore" },
  );
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${emuPort}/health`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error("otpgate emulator did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  const config = path.join(work, "otpgate.toml");
  writeFileSync(
    config,
    readFileSync(path.join(HERE, "otpgate-e2e.toml"), "utf8")
      .replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`)
      .replaceAll('"http://127.0.0.1:9"', `"http://127.0.0.1:${emuPort}"`),
  );
  server = await startServer({
    port,
    args: ["--config", config],
    env: {
      OTPGATE_E2E_API_KEY: randomBytes(24).toString("hex"),
      OTPGATE_E2E_WEBHOOK_KEY: webhookKey,
      OTPGATE_E2E_DEVICE_PASSWORD: devicePassword,
    },
  });
});

after(async () => {
  await server?.stop();
  emulator?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("expiry: a live countdown, then the code is refused as expired", { timeout: 150_000 }, () =>
  withDemo(async ({ page }) => {
    await page.selectOption("#country", "US");
    await page.fill("#national", TEST_NUMBER.national);
    await page.click("#start-btn");
    await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
    const countdown = await page.textContent("#expiry");
    assert.match(countdown, /The code expires in (0:5\d|1:00|\d+ s)\./, countdown);
    await screenshot(page, "expiry-1-countdown");

    // The page's own clock says so first...
    await page.waitForFunction(
      () => /expired/.test(document.querySelector("#check-error").textContent),
      null,
      { timeout: 90_000, polling: 500 },
    );
    assert.equal((await page.textContent("#resend-btn")).trim(), "Send a new code");
    assert.ok(await page.locator("#resend-btn").isEnabled());
    // ...and the issuer agrees: the right code, too late, is refused.
    await page.evaluate(() => { document.querySelector("#check-error").textContent = ""; });
    await typeCode(page, TEST_CODE);
    await page.waitForFunction(
      () => /expired/.test(document.querySelector("#check-error").textContent),
      null,
      { timeout: 10_000 },
    );
    assert.ok(await page.locator("#result").isHidden(), "never approved");
    await screenshot(page, "expiry-2-expired");
  }, { base: server.url }));

test("rate limit: the refusal counts down live from Retry-After", () =>
  withDemo(async ({ page }) => {
    const phone = freshPhone();
    // The budget is two codes per number: use them (the emulated phone sends them), the
    // third is refused.
    for (let i = 0; i < 2; i++) {
      await page.selectOption("#country", "US");
      await page.fill("#national", phone.national);
      await page.click("#start-btn");
      await page.waitForFunction(
        () => !document.querySelector("#verify-step").hidden
          || /again in/.test(document.querySelector("#start-error").textContent),
        null,
        { timeout: 15_000 },
      );
      if (await page.locator("#verify-step").isVisible()) {
        await page.click("#change-btn");
        await page.waitForSelector("#start-form:not([hidden])");
      } else {
        assert.match(await page.textContent("#start-error"), /No gateway phone can send an SMS right now\. You can try again in/);
        if (i === 0) await screenshot(page, "gateway-unavailable-countdown");
        await page.waitForSelector("#start-btn:not([disabled])", { timeout: 60_000 });
      }
    }
    await page.fill("#national", phone.national);
    await page.click("#start-btn");
    await page.waitForFunction(
      () => /Too many requests/.test(document.querySelector("#start-error").textContent),
      null,
      { timeout: 15_000 },
    );
    const first = await page.textContent("#start-error");
    assert.match(first, /You can request a code again in (\d+:\d\d|\d+ s)\./);
    assert.ok(await page.locator("#start-btn").isDisabled(), "the button waits too");
    await screenshot(page, "rate-limit-countdown");
    // Live: the text changes by itself within a couple of seconds.
    await page.waitForFunction(
      (prev) => document.querySelector("#start-error").textContent !== prev,
      first,
      { timeout: 3_000 },
    );
  }, { base: server.url }));

test("attempts: the last wrong code locks the code, and the page says so", () =>
  withDemo(async ({ page }) => {
    await page.selectOption("#country", "US");
    await page.fill("#national", TEST_NUMBER.national);
    await page.click("#start-btn");
    await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
    // max_attempts = 3 in the e2e config.
    const seen = [];
    for (const wrong of ["111111", "222222", "333333"]) {
      await page.evaluate(() => { document.querySelector("#check-error").textContent = ""; });
      await typeCode(page, wrong);
      await page.waitForFunction(() => document.querySelector("#check-error").textContent !== "", null, { timeout: 10_000 });
      seen.push(await page.textContent("#check-error"));
    }
    assert.match(seen[0], /2 attempts left/);
    assert.match(seen[1], /1 attempt left/);
    assert.match(seen[2], /no attempts are left|locked/);
    assert.ok(await page.locator("#check-btn").isDisabled(), "nothing more to try with this code");
    await screenshot(page, "attempts-exhausted");
    // Even the right code is refused now.
    await page.evaluate(() => {
      document.querySelector("#check-btn").disabled = false;
      document.querySelector("#check-error").textContent = "";
    });
    await typeCode(page, TEST_CODE);
    await page.waitForFunction(() => document.querySelector("#check-error").textContent !== "", null, { timeout: 10_000 });
    assert.match(await page.textContent("#check-error"), /locked|no attempts|Send a new code/);
    assert.ok(await page.locator("#result").isHidden(), "never approved");
  }, { base: server.url }));
