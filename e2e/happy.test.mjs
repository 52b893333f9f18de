// The whole flow in a real browser against a real `otpgate serve` (dev mode): start, the SMS
// appears on the emulated phone, the code is typed, approved, and the receipt's claims are
// shown after offline verification against the issuer's JWKS.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  withDemo, freshPhone, startVerification, smsOnPanel, typeCode, screenshot,
  axeViolations,
} from "./helpers.mjs";

test("happy path: start, SMS on the phone panel, code typed, approved, claims verified", () =>
  withDemo(async ({ page, errors }) => {
    const phone = freshPhone();
    const t0 = Date.now();
    await startVerification(page, phone);
    assert.equal(await page.textContent("#sent-to"), phone.e164);
    // Focus moved to the code field, which is set up for autofill.
    assert.equal(await page.evaluate(() => document.activeElement?.id), "code");
    assert.equal(await page.getAttribute("#code", "autocomplete"), "one-time-code");
    assert.equal(await page.getAttribute("#code", "inputmode"), "numeric");

    const sms = await smsOnPanel(page, 1);
    const smsMs = Date.now() - t0;
    assert.match(sms.text, /\d{4,10}/, "the SMS carries a code");
    // The live timeline moved past "queued".
    await page.waitForSelector('#timeline li[data-state="submitted"].done', { timeout: 15_000 });
    await screenshot(page, "happy-1-sms-on-phone");

    await typeCode(page, sms.code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
    const wall = Date.now() - t0;
    await page.waitForSelector("#result[data-receipt]", { timeout: 10_000 });
    assert.equal(await page.getAttribute("#result", "data-receipt"), "valid",
      `receipt check: ${await page.textContent("#receipt-check")}`);
    assert.equal((await page.textContent('#claims dd[data-claim="phone_number"]')).split(" ")[0], phone.e164);
    assert.match(await page.textContent('#claims dd[data-claim="phone_number_verified"]'), /^true/);
    assert.match(await page.textContent('#claims dd[data-claim="aud"]'), /^demo/);
    assert.match(await page.textContent('#claims dd[data-claim="sub"]'), /^v_/);
    const pageMs = Number(await page.getAttribute("#result", "data-elapsed-ms"));
    console.log(`# timing: click → SMS on the phone panel ${smsMs} ms; start → approved ${pageMs} ms measured by the page, ${wall} ms wall clock (reading and typing the code included)`);
    await screenshot(page, "happy-2-approved");
    assert.deepEqual(await axeViolations(page), [], "axe-core: the verdict");
    assert.deepEqual(errors, [], "no console or page errors");
  }));

test("phone-sized screen: the flow fits and stays usable", () =>
  withDemo(async ({ page }) => {
    const phone = freshPhone();
    await startVerification(page, phone);
    const sms = await smsOnPanel(page, 1);
    // Nothing overflows sideways on a small screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`);
    await screenshot(page, "mobile-1-code");
    await typeCode(page, sms.code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
    await screenshot(page, "mobile-2-approved");
  }, { viewport: { width: 375, height: 740 } }));

test("accessible form: every control has a label, keyboard only works", () =>
  withDemo(async ({ page }) => {
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select")]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
        .map((el) => el.id));
    assert.deepEqual(unlabelled, []);
    assert.ok(await page.$("[aria-live]"), "a live region announces status changes");
    assert.deepEqual(await axeViolations(page), [], "axe-core: the number step");
    // Keyboard only: focus the number field, type, submit with Enter.
    const phone = freshPhone();
    await page.selectOption("#country", "US");
    await page.focus("#national");
    await page.keyboard.type(phone.national);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
    await page.waitForSelector("#sms-list .sms", { timeout: 15_000 });
    assert.deepEqual(await axeViolations(page), [], "axe-core: the code step with the phone panel");
    await page.emulateMedia({ colorScheme: "dark" });
    assert.deepEqual(await axeViolations(page), [], "axe-core: the code step, dark scheme");
    await screenshot(page, "a11y-dark-code-step");
    await page.emulateMedia({ colorScheme: "light" });
    // A refusal is explained without a round trip: an empty code.
    await page.keyboard.press("Enter");
    assert.match(await page.textContent("#check-error"), /Enter the code/);
    assert.equal(await page.getAttribute("#code", "aria-invalid"), "true");
    // An invalid number is refused with words too.
    await page.click("#change-btn");
    await page.fill("#national", "12");
    await page.keyboard.press("Enter");
    assert.match(await page.textContent("#start-error"), /too short/);
  }));
