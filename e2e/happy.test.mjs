// The whole flow through the demo page's <otp-verify> element, in a real browser against a
// real `otpgate serve` (dev mode, a fresh one for this file), on a phone-sized screen and on a
// desktop: start, the SMS appears on the emulated phone (above the code field on the phone,
// beside it on the desktop, in view either way), the code is typed, approved, and the element
// hands over the receipt with its claims verified offline against the issuer's JWKS.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  SCREENS, activeId, axeOnElement, axeViolations, devServer, events, freshPhone, inOtp, otpText, recordEvents,
  screenshot, smsOnPanel, startVerification, typeCode, withDemo, waitInOtp,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await devServer();
});
after(() => server?.stop());

/** The box of `sel` (pierces the element's shadow root) relative to the viewport. */
const box = (page, sel) => page.locator(sel).first().evaluate((el) => {
  const r = el.getBoundingClientRect();
  return { top: r.top, bottom: r.bottom, left: r.left, right: r.right };
});

for (const { name, viewport } of SCREENS) {
  test(`happy path (${name} ${viewport.width}×${viewport.height}): SMS in view beside/above the code, typed, approved, receipt verified`, () =>
    withDemo(async ({ page, errors }) => {
      await recordEvents(page);
      const phone = freshPhone();
      const t0 = Date.now();
      await startVerification(page, phone);
      assert.equal(await otpText(page, "sent-to"), phone.e164);
      // Focus moved to the code field, which is set up for autofill.
      assert.equal(await activeId(page), "code");
      assert.equal(await page.getAttribute("#code", "autocomplete"), "one-time-code");
      assert.equal(await page.getAttribute("#code", "inputmode"), "numeric");
      const [sent] = await events(page, "otp-sent");
      assert.equal(sent.detail.phone, phone.e164);
      assert.match(sent.detail.id, /^v_/);

      const sms = await smsOnPanel(page, 1);
      const smsMs = Date.now() - t0;
      assert.match(sms.text, /\d{4,10}/, "the SMS carries a code");

      // The newest SMS and the code field are both in view, without scrolling: above it on
      // the phone, beside it on the desktop.
      const smsBox = await box(page, "#sms-list .sms:not(.old)");
      const codeBox = await box(page, "#code");
      for (const [what, b] of [["the SMS", smsBox], ["the code field", codeBox]]) {
        assert.ok(b.top >= 0 && b.bottom <= viewport.height, `${what} is in view: ${JSON.stringify(b)}`);
      }
      if (viewport.width < 800) {
        assert.ok(smsBox.bottom <= codeBox.top, `the phone is above the code field: ${JSON.stringify({ smsBox, codeBox })}`);
      } else {
        assert.ok(smsBox.left >= codeBox.right, `the phone is beside the code field: ${JSON.stringify({ smsBox, codeBox })}`);
        assert.ok(smsBox.top < codeBox.bottom && smsBox.bottom > codeBox.top - 200, "side by side, at the same height");
      }
      // Nothing overflows sideways.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`);

      // The delivery steps: each step passed has a time, even one passed between two polls.
      await waitInOtp(page, (root) => root.querySelector('#timeline li[data-state="delivered"]').className === "done");
      const steps = await inOtp(page, (root) => [...root.querySelectorAll("#timeline li")]
        .map((li) => ({ state: li.dataset.state, cls: li.className, when: li.querySelector(".when").textContent })));
      for (const s of steps) {
        assert.equal(s.cls, "done", `${s.state} done`);
        assert.match(s.when, /^(by )?\+\d+\.\d s$/, `${s.state} has a time: ${JSON.stringify(steps)}`);
      }
      // Desktop Chromium has OTPCredential but no SMS to read: it is not promised autofill.
      assert.equal(await otpText(page, "code-hint"), "Type the code from the SMS.");
      await screenshot(page, `happy-${name}-1-sms-and-code`);
      assert.deepEqual(await axeViolations(page), [], "axe-core: the code step with the phone panel");
      assert.deepEqual(await axeOnElement(page), [], "axe-core on the element, every impact: the code step");

      await typeCode(page, sms.code);
      await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
      const wall = Date.now() - t0;
      assert.equal(await activeId(page), "result-title", "focus on the verdict");
      await page.waitForFunction(() => window.__otpEvents.some((e) => e.type === "otp-approved"), null, { timeout: 10_000 });
      const [approved] = await events(page, "otp-approved");
      const { claims, receipt, elapsedMs } = approved.detail;
      assert.match(receipt, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a compact JWT");
      assert.equal(claims.phone_number, phone.e164);
      assert.equal(claims.phone_number_verified, true);
      assert.equal(claims.aud, "demo");
      assert.equal(claims.sub, sent.detail.id);
      assert.equal(approved.detail.phone, phone.e164);
      assert.equal(await events(page, "otp-error").then((e) => e.length), 0, "no otp-error on the way");
      // The page shows what the event carried.
      assert.equal(await page.getAttribute("#receipt-view", "data-receipt"), "valid");
      assert.equal(await page.textContent('#claims dd[data-claim="phone_number"]'), phone.e164);
      console.log(`# timing (${name}): click → SMS on the phone panel ${smsMs} ms; start → approved ${elapsedMs} ms measured by the element, ${wall} ms wall clock (reading and typing the code included)`);
      await screenshot(page, `happy-${name}-2-approved`);
      assert.deepEqual(await axeViolations(page), [], "axe-core: the verdict");
      assert.deepEqual(await axeOnElement(page), [], "axe-core on the element, every impact: the verdict");
      assert.deepEqual(errors, [], "no console or page errors");
    }, { base: server.url, viewport }));
}

test("accessible: labels, a live region, keyboard only, axe in light and dark, refusals in words", () =>
  withDemo(async ({ page }) => {
    const unlabelled = await inOtp(page, (root) => [...root.querySelectorAll("input, select")]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
      .map((el) => el.id));
    assert.deepEqual(unlabelled, []);
    assert.ok(await inOtp(page, (root) => !!root.querySelector("[aria-live]")), "a live region announces status changes");
    assert.deepEqual(await axeViolations(page), [], "axe-core: the number step");
    assert.deepEqual(await axeOnElement(page), [], "axe-core on the element, every impact: the number step");
    await page.emulateMedia({ colorScheme: "dark" });
    assert.deepEqual(await axeViolations(page), [], "axe-core: the number step, dark scheme");
    assert.deepEqual(await axeOnElement(page), [], "axe-core on the element, every impact: dark scheme");
    await page.emulateMedia({ colorScheme: "light" });

    // An invalid number is refused in words, the field marked and focused.
    await page.click("#national");
    await page.keyboard.type("12");
    await page.keyboard.press("Enter");
    assert.match(await otpText(page, "start-error"), /too short/i);
    assert.equal(await page.getAttribute("#national", "aria-invalid"), "true");
    assert.equal(await activeId(page), "national");

    // Keyboard only, from the top of the page: Tab to the country, pick with the keyboard,
    // Tab to the number, type, Enter.
    const phone = freshPhone();
    await page.fill("#national", "");
    await page.focus("#country");
    await page.selectOption("#country", "US");
    await page.keyboard.press("Tab");
    assert.equal(await activeId(page), "national", "Tab goes from the country to the number");
    await page.keyboard.type(phone.national);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
    assert.equal(await activeId(page), "code");
    await page.waitForSelector("#sms-list .sms", { timeout: 15_000 });
    await waitInOtp(page, (root) => root.getElementById("live").textContent !== "");
    assert.match(await otpText(page, "live"), /Code sent to \+1/);
    await page.emulateMedia({ colorScheme: "dark" });
    assert.deepEqual(await axeViolations(page), [], "axe-core: the code step, dark scheme");
    await screenshot(page, "a11y-dark-code-step");
    await page.emulateMedia({ colorScheme: "light" });
    // An empty code is refused without a round trip.
    await page.keyboard.press("Enter");
    assert.match(await otpText(page, "check-error"), /Enter the code/);
    assert.equal(await page.getAttribute("#code", "aria-invalid"), "true");
    assert.deepEqual(await axeOnElement(page), [], "axe-core on the element, every impact: a refusal shown");
    // The scan does look inside the shadow root: an unlabelled field there is caught.
    await inOtp(page, (root) => root.getElementById("check-form").append(Object.assign(document.createElement("input"), { id: "probe" })));
    assert.match((await axeOnElement(page)).join("\n"), /^label \(critical\)/m);
    await inOtp(page, (root) => root.getElementById("probe").remove());
    // "Change number" goes back with the number kept and focused.
    await page.click("#change-btn");
    assert.equal(await activeId(page), "national");
    assert.equal(await page.inputValue("#national"), phone.national);
  }, { base: server.url, viewport: SCREENS[0].viewport }));

test("the country picker follows a typed +33 number, and the number is put in E.164 by the package", () =>
  withDemo(async ({ page }) => {
    await recordEvents(page);
    await page.selectOption("#country", "US");
    await page.fill("#national", "");
    await page.click("#national");
    await page.keyboard.type("+33 6 12 34 56 78");
    assert.equal(await page.inputValue("#country"), "FR");
    assert.ok(await inOtp(page, (root) => root.getElementById("dial-prefix").hidden), "no +1 prefix beside a +… number");
    await page.fill("#national", "");
    await page.keyboard.type("+44 7700 900123");
    assert.equal(await page.inputValue("#country"), "GB");
    // A calling code outside the picker's list is still shown as what it is.
    await page.fill("#national", "");
    await page.keyboard.type("+372 5123 4567");
    assert.equal(await page.inputValue("#country"), "+372");
    assert.match(await page.locator("#country option:checked").textContent(), /\+372/);
    // A national number with the trunk prefix of the picked country (France: 0).
    await page.fill("#national", "");
    await page.selectOption("#country", "FR");
    await page.keyboard.type("06 12 34 56 78");
    await screenshot(page, "country-follows-number");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => window.__otpEvents.length > 0, null, { timeout: 15_000 });
    const [first] = await events(page);
    // Whatever the issuer says about this number, the element sent it in E.164.
    if (first.type === "otp-sent") assert.equal(first.detail.phone, "+33612345678");
    else assert.notEqual(first.detail.stage, "load", JSON.stringify(first.detail));
  }, { base: server.url, viewport: SCREENS[0].viewport }));
