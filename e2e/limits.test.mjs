// Expiry and rate limits through the demo page's <otp-verify> element, on a phone-sized screen
// and on a desktop. These need a short code lifetime and a small budget, so this file starts
// its own `otpgate serve` with e2e/otpgate-e2e.toml (lifetime 60 s, the policy's minimum; 2
// codes per number per 10 min; 3 attempts; a test number with a fixed code).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import {
  HERE, SCREENS, events, freePort, freshPhone, inOtp, otpText, otpgateBin, recordEvents, screenshot,
  startServer, typeCode, waitInOtp, withDemo,
} from "./helpers.mjs";

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

/** Seconds in a countdown text: "42 s" or "9:59". */
function secsIn(text) {
  const m = /in (?:(\d+):(\d\d)|(\d+) s)\b/.exec(text);
  if (!m) return null;
  return m[3] ? Number(m[3]) : Number(m[1]) * 60 + Number(m[2]);
}

async function startTestNumber(page) {
  await page.selectOption("#country", "US");
  await page.fill("#national", TEST_NUMBER.national);
  await page.click("#start-btn");
  await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
}

test("expiry (phone and desktop at once): a live countdown, then the code is refused as expired", { timeout: 150_000 }, () =>
  Promise.all(SCREENS.map(({ name, viewport }) => withDemo(async ({ page }) => {
    await recordEvents(page);
    const started = page.waitForResponse((r) => r.url().endsWith("/v1/verifications") && r.request().method() === "POST");
    await startTestNumber(page);
    const view = await (await started).json();
    const countdown = await otpText(page, "expiry");
    assert.match(countdown, /^The code expires in (0:59|1:00|5\d s)\.$/, countdown);
    // The countdown follows the issuer's expires_at to the second.
    const left = await inOtp(page, (root, at) => ({
      text: root.getElementById("expiry").textContent,
      expected: Math.ceil((Date.parse(at) - Date.now()) / 1000),
    }), view.expires_at);
    assert.ok(Math.abs(secsIn(left.text) - left.expected) <= 1, JSON.stringify(left));
    assert.equal(await otpText(page, "delivery-status"), "No SMS was sent: this is a test number with a fixed code.");
    await screenshot(page, `expiry-${name}-1-countdown`);

    // The element's own clock says so first...
    await waitInOtp(page, (root) => /expired/.test(root.getElementById("check-error").textContent), null,
      { timeout: 90_000, polling: 500 });
    const expiredAt = Date.now();
    assert.ok(expiredAt >= Date.parse(view.expires_at) - 50, "not before the issuer's expires_at");
    assert.equal((await page.textContent("#resend-btn")).trim(), "Send a new code");
    assert.ok(await page.locator("#resend-btn").isEnabled());
    assert.ok(await page.locator("#check-btn").isDisabled(), "nothing to check with an expired code");
    const expired = (await events(page, "otp-error")).find((e) => e.detail.code === "expired");
    assert.ok(expired, "otp-error with code expired");
    await screenshot(page, `expiry-${name}-2-expired`);
    // ...and the issuer agrees: the right code, too late, is refused.
    await inOtp(page, (root) => {
      root.getElementById("check-btn").disabled = false;
      root.getElementById("check-error").textContent = "";
    });
    const checked = page.waitForResponse((r) => r.url().endsWith("/check"));
    await typeCode(page, TEST_CODE);
    assert.equal((await checked).status(), 410, "the issuer refuses the late code");
    await waitInOtp(page, (root) => /expired/.test(root.getElementById("check-error").textContent), null, { timeout: 10_000 });
    assert.ok(await page.locator("#result").isHidden(), "never approved");
    // "Send a new code" starts a fresh verification for the same number.
    await page.click("#resend-btn");
    await page.waitForFunction(() => window.__otpEvents.filter((e) => e.type === "otp-sent").length === 2, null, { timeout: 15_000 });
    assert.match(await otpText(page, "expiry"), /^The code expires in/);
  }, { base: server.url, viewport }))));

for (const { name, viewport } of SCREENS) {
  test(`rate limit (${name}): the refusal counts down live from the issuer's Retry-After`, { timeout: 150_000 }, () =>
    withDemo(async ({ page }) => {
      await recordEvents(page);
      const phone = freshPhone();
      // The budget is two codes per number: use them (the emulated phone sends them), the
      // third is refused.
      for (let i = 0; i < 2; i++) {
        await page.selectOption("#country", "US");
        await page.fill("#national", phone.national);
        await page.click("#start-btn");
        await waitInOtp(page, (root) => !root.getElementById("verify-step").hidden
          || /again in/.test(root.getElementById("start-error").textContent));
        if (await page.locator("#verify-step").isVisible()) {
          await page.click("#change-btn");
          await page.waitForSelector("#start-form:not([hidden])");
        } else {
          assert.match(await otpText(page, "start-error"), /No gateway phone can send an SMS right now\. You can try again in/);
          if (i === 0) await screenshot(page, `gateway-unavailable-${name}-countdown`);
          await page.waitForSelector("#start-btn:not([disabled])", { timeout: 60_000 });
        }
      }
      await page.fill("#national", phone.national);
      const refusedP = page.waitForResponse((r) => r.url().endsWith("/v1/verifications") && r.status() === 429);
      await page.click("#start-btn");
      const refused = await refusedP;
      const retryAfter = Number(await refused.headerValue("retry-after"));
      assert.ok(retryAfter > 0, `Retry-After ${retryAfter}`);
      await waitInOtp(page, (root) => /Too many/.test(root.getElementById("start-error").textContent));
      const first = await otpText(page, "start-error");
      assert.match(first, /^Too many (codes were requested for this number|requests)\. You can request a code again in (\d+:\d\d|\d+ s)\.$/);
      // The countdown starts at the issuer's seconds (one less if a second went by before
      // this reading).
      const shown = secsIn(first);
      assert.ok(shown === retryAfter || shown === retryAfter - 1, `shown ${shown} vs Retry-After ${retryAfter}`);
      const err = (await events(page, "otp-error")).find((e) => e.detail.status === 429);
      assert.equal(err.detail.retryAfter, retryAfter, "otp-error carries Retry-After");
      assert.equal(err.detail.stage, "start");
      assert.ok(await page.locator("#start-btn").isDisabled(), "the button waits too");
      await screenshot(page, `rate-limit-${name}-countdown`);
      // Live: the text changes by itself, a second at a time.
      await waitInOtp(page, (root, prev) => root.getElementById("start-error").textContent !== prev, first, { timeout: 3_000 });
      assert.equal(secsIn(await otpText(page, "start-error")), shown - 1);
    }, { base: server.url, viewport }));
}

test("attempts: the last wrong code locks the code, and the element says so", () =>
  withDemo(async ({ page }) => {
    await startTestNumber(page);
    // max_attempts = 3 in the e2e config.
    const seen = [];
    for (const wrong of ["111111", "222222", "333333"]) {
      await inOtp(page, (root) => { root.getElementById("check-error").textContent = ""; });
      await typeCode(page, wrong);
      await waitInOtp(page, (root) => root.getElementById("check-error").textContent !== "", null, { timeout: 10_000 });
      seen.push(await otpText(page, "check-error"));
    }
    assert.match(seen[0], /2 attempts left/);
    assert.match(seen[1], /1 attempt left/);
    assert.match(seen[2], /no attempts are left|locked/);
    assert.ok(await page.locator("#check-btn").isDisabled(), "nothing more to try with this code");
    await screenshot(page, "attempts-exhausted");
    // Even the right code is refused now.
    await inOtp(page, (root) => {
      root.getElementById("check-btn").disabled = false;
      root.getElementById("check-error").textContent = "";
    });
    await typeCode(page, TEST_CODE);
    await waitInOtp(page, (root) => root.getElementById("check-error").textContent !== "", null, { timeout: 10_000 });
    assert.match(await otpText(page, "check-error"), /locked|no attempts|Send a new code/);
    assert.ok(await page.locator("#result").isHidden(), "never approved");
  }, { base: server.url, viewport: SCREENS[0].viewport }));
