// WebOTP autofill on the demo page. Headless Chromium has OTPCredential but no SMS receiver,
// so `navigator.credentials.get` is replaced by a stand-in that records each request and
// resolves with the code when the test "receives the SMS" (or rejects on abort, as Chrome does).

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  withDemo, freshPhone, startVerification, smsOnPanel, screenshot,
} from "./helpers.mjs";

const STAND_IN = () => {
  window.__otp = { calls: [] };
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

test("WebOTP: the code fills itself in from the SMS and is checked", () =>
  withDemo(async ({ page }) => {
    await startVerification(page, freshPhone());
    const { code } = await smsOnPanel(page, 1);
    const calls = await page.evaluate(() => window.__otp.calls);
    assert.equal(calls.length, 1, "one WebOTP request per code");
    assert.deepEqual(calls[0].transport, ["sms"]);
    assert.ok(calls[0].hasSignal, "the request can be aborted");
    // The browser reads the origin-bound SMS and hands the code over.
    await page.evaluate((c) => window.__otp.deliver(c), code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
    assert.equal(await page.getAttribute("#result", "data-receipt"), "valid");
    await screenshot(page, "webotp-approved");
  }, { init: STAND_IN }));

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
  }, { init: STAND_IN }));
