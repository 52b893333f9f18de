// WebOTP autofill in the <otp-verify> element (a fresh dev-mode `otpgate serve` for this
// file). Headless Chromium has OTPCredential but no SMS receiver, so
// `navigator.credentials.get` is replaced by a stand-in that records each request and resolves
// with the code when the test "receives the SMS" (or rejects on abort, as Chrome does). The
// stand-in also says the browser is a phone (navigator.userAgentData.mobile), where the element
// promises autofill; desktop Chromium is never promised it (happy.test.mjs checks that).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  SCREENS, devServer, events, freshPhone, otpText, recordEvents, screenshot, smsOnPanel,
  startVerification, withDemo,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await devServer();
});
after(() => server?.stop());

const STAND_IN = () => {
  window.__otp = { calls: [] };
  Object.defineProperty(navigator, "userAgentData", { value: { mobile: true, brands: [], platform: "Android" } });
  navigator.credentials.get = (options) => new Promise((resolve, reject) => {
    const call = { transport: options?.otp?.transport, aborted: false, hasSignal: !!options?.signal };
    window.__otp.calls.push(call);
    options?.signal?.addEventListener("abort", () => {
      call.aborted = true;
      reject(new DOMException("The operation was aborted.", "AbortError"));
    });
    window.__otp.deliver = (code) => resolve({ type: "otp", id: "", code });
  });
};

const phone = { viewport: SCREENS[0].viewport, init: STAND_IN };

test("WebOTP: on a phone the code fills itself in from the SMS and is checked", () =>
  withDemo(async ({ page }) => {
    await recordEvents(page);
    await startVerification(page, freshPhone());
    assert.equal(await otpText(page, "code-hint"), "Your phone can fill in the code from the SMS, or type it.");
    const { code } = await smsOnPanel(page, 1);
    const calls = await page.evaluate(() => window.__otp.calls);
    assert.equal(calls.length, 1, "one WebOTP request per code");
    assert.deepEqual(calls[0].transport, ["sms"]);
    assert.ok(calls[0].hasSignal, "the request can be aborted");
    // The browser reads the origin-bound SMS and hands the code over.
    await page.evaluate((c) => window.__otp.deliver(c), code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
    await page.waitForFunction(() => window.__otpEvents.some((e) => e.type === "otp-approved"), null, { timeout: 10_000 });
    assert.equal((await events(page, "otp-approved"))[0].detail.claims.phone_number_verified, true);
    await screenshot(page, "webotp-approved");
  }, { base: server.url, ...phone }));

test("WebOTP: typing aborts the wait, so autofill and typing never race", () =>
  withDemo(async ({ page }) => {
    await startVerification(page, freshPhone());
    await page.waitForFunction(() => window.__otp.calls.length === 1);
    await page.click("#code");
    await page.keyboard.type("1");
    await page.waitForFunction(() => window.__otp.calls[0].aborted, null, { timeout: 5_000 });
    // A late "SMS" after the abort changes nothing.
    await page.evaluate(() => window.__otp.deliver("999999"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await page.inputValue("#code"), "1");
    assert.ok(await page.locator("#result").isHidden());
  }, { base: server.url, ...phone }));

test("WebOTP: a browser without OTPCredential is never asked, and is told to type the code", () =>
  withDemo(async ({ page }) => {
    await startVerification(page, freshPhone());
    assert.equal(await otpText(page, "code-hint"), "Type the code from the SMS.");
    await smsOnPanel(page, 1);
    assert.equal(await page.evaluate(() => window.__otp.calls.length), 0, "no navigator.credentials.get");
  }, {
    base: server.url,
    viewport: SCREENS[0].viewport,
    init: `(${STAND_IN})(); delete window.OTPCredential;`,
  }));
