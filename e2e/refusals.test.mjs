// Refusals through the demo page's <otp-verify> element, in a real browser against a real
// `otpgate serve` (dev mode, a fresh one for this file), on a phone-sized screen and on a
// desktop: a wrong code shows the attempts left; the resend button counts the issuer's
// cooldown down to the second (resend_at, and Retry-After when the issuer refuses an early
// resend); a resend rotates the code (the old one stops working).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  SCREENS, activeId, devServer, events, freshPhone, inOtp, otpText, recordEvents, screenshot,
  smsOnPanel, startVerification, typeCode, waitInOtp, withDemo,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await devServer();
});
after(() => server?.stop());

/** The same number of digits, every digit changed: certainly not the code. */
function wrongOf(code) {
  return [...code].map((c) => (/\d/.test(c) ? String((Number(c) + 1) % 10) : c)).join("");
}

/** Seconds in a countdown text: "42 s" or "1:05". */
function secsIn(text) {
  const m = /\((?:(\d+):(\d\d)|(\d+) s)\)|in (?:(\d+):(\d\d)|(\d+) s)\b/.exec(text);
  if (!m) return null;
  if (m[3] || m[6]) return Number(m[3] || m[6]);
  return Number(m[1] || m[4]) * 60 + Number(m[2] || m[5]);
}

/**
 * The resend button's seconds against the issuer's resend_at, read together in the page a
 * few times a second for `ms`: every reading must equal ceil((resend_at - now) / 1000).
 */
async function sampleCooldown(page, resendAt, ms) {
  const seen = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const s = await inOtp(page, (root, at) => {
      const label = root.getElementById("resend-btn").textContent;
      return { label, expected: Math.ceil((Date.parse(at) - Date.now()) / 1000) };
    }, resendAt);
    seen.push(s);
    await new Promise((r) => setTimeout(r, 230));
  }
  return seen;
}

/**
 * Every reading equals ceil((resend_at - now) / 1000), except a reading taken in the few
 * milliseconds between a second's boundary and the label's change (then one more, never less):
 * at most one such reading per boundary crossed.
 */
function assertOnTheSecond(samples) {
  const late = samples.filter((s) => secsIn(s.label) !== s.expected);
  const crossings = new Set(samples.map((s) => s.expected)).size - 1;
  assert.ok(late.every((s) => secsIn(s.label) === s.expected + 1) && late.length <= crossings,
    `the label follows resend_at to the second: ${JSON.stringify(samples)}`);
}

for (const { name, viewport } of SCREENS) {
  test(`wrong code (${name}): refused with the attempts left, then the right code still works`, () =>
    withDemo(async ({ page }) => {
      await recordEvents(page);
      await startVerification(page, freshPhone());
      const { code } = await smsOnPanel(page, 1);

      await typeCode(page, wrongOf(code));
      await page.waitForSelector("#check-error:not([hidden])", { timeout: 10_000 });
      const first = await otpText(page, "check-error");
      assert.match(first, /^That code is not right\. (\d+) attempts? left\.$/);
      const left1 = Number(/(\d+) attempts? left/.exec(first)[1]);
      const [err] = await events(page, "otp-error");
      assert.equal(err.detail.code, "wrong_code");
      assert.equal(err.detail.stage, "check");
      assert.equal(err.detail.attemptsLeft, left1, "the event carries the issuer's count");
      assert.equal(await page.getAttribute("#code", "aria-invalid"), "true");
      assert.equal(await activeId(page), "code", "focus back on the field");
      await screenshot(page, `wrong-code-${name}-1-attempts-left`);

      await typeCode(page, wrongOf(wrongOf(code)));
      await waitInOtp(page, (root, prev) => {
        const t = root.getElementById("check-error").textContent;
        return t !== "" && t !== prev;
      }, first, { timeout: 10_000 });
      const left2 = Number(/(\d+) attempts? left/.exec(await otpText(page, "check-error"))[1]);
      assert.equal(left2, left1 - 1, "every wrong code costs one attempt");

      await typeCode(page, code);
      await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
      await screenshot(page, `wrong-code-${name}-2-then-approved`);
    }, { base: server.url, viewport }));
}

test("cooldown (phone and desktop at once): the resend countdown is the issuer's seconds; an early resend counts Retry-After; a resend rotates the code", { timeout: 240_000 }, () =>
  Promise.all(SCREENS.map(({ name, viewport }) => withDemo(async ({ page }) => {
    await recordEvents(page);
    const started = page.waitForResponse((r) => r.url().endsWith("/v1/verifications") && r.request().method() === "POST");
    await startVerification(page, freshPhone());
    const view = await (await started).json();

    // Dev mode's cooldown is 30 s and the issuer's resend_at is a whole second: the button
    // starts at 30, never 31, and follows resend_at to the second.
    const resend = page.locator("#resend-btn");
    assert.ok(await resend.isDisabled(), "no resend inside the cooldown");
    const [sent] = await events(page, "otp-sent");
    assert.equal(sent.detail.resendAt, view.resend_at);
    const cooldown = Math.ceil((Date.parse(view.resend_at) - Date.parse(await (await started).headerValue("date"))) / 1000);
    // resend_at is floor(now + 30 s) and the Date header floor(now): exactly 30 apart.
    assert.equal(cooldown, 30, "the issuer's cooldown, from its Date header");
    const samples = await sampleCooldown(page, view.resend_at, 2500);
    for (const s of samples) {
      assert.ok(Math.abs(secsIn(s.label) - s.expected) <= 1, `label ${s.label} vs resend_at ${s.expected}`);
    }
    assertOnTheSecond(samples);
    // The first reading, right after "Send code": 30 (29 when the issuer's whole-second
    // resend_at fell early in its second), never the old page's 31.
    assert.ok([29, 30].includes(secsIn(samples[0].label)), `first label ${samples[0].label}`);
    assert.ok(samples.every((s) => secsIn(s.label) <= 30), `never above the issuer's 30 s: ${JSON.stringify(samples)}`);
    assert.equal(await page.getAttribute("#resend-btn", "aria-label"), `Resend code, available in ${secsIn(await resend.textContent())} seconds`);
    const first = await smsOnPanel(page, 1);
    await screenshot(page, `cooldown-${name}-1-countdown`);

    // An early resend (the button forced on, as a stale tab would): the issuer refuses with
    // Retry-After, and the element counts exactly those seconds.
    // Enabled and clicked in one synchronous step: the countdown's next tick (which disables
    // the button again) cannot come between them, as it did on a loaded machine.
    const refused = page.waitForResponse((r) => r.url().endsWith("/resend"));
    await inOtp(page, (root) => {
      const b = root.getElementById("resend-btn");
      b.disabled = false;
      b.click();
    });
    const r429 = await refused;
    assert.equal(r429.status(), 429);
    const retryAfter = Number(await r429.headerValue("retry-after"));
    assert.ok(retryAfter > 0 && retryAfter <= 30, `Retry-After ${retryAfter}`);
    await waitInOtp(page, (root) => /You can resend in/.test(root.getElementById("check-error").textContent));
    assert.equal(secsIn(await otpText(page, "check-error")), retryAfter, "the refusal says the issuer's seconds");
    const afterRefusal = secsIn(await resend.textContent());
    assert.ok(afterRefusal === retryAfter || afterRefusal === retryAfter - 1, `button ${afterRefusal} vs Retry-After ${retryAfter}`);
    const [err] = await events(page, "otp-error");
    assert.equal(err.detail.code, "resend_cooldown");
    assert.equal(err.detail.retryAfter, retryAfter);

    // Wait the cooldown out, then resend.
    await page.waitForSelector("#resend-btn:not([disabled])", { timeout: 60_000 });
    assert.equal((await resend.textContent()).trim(), "Resend code");
    const resent = page.waitForResponse((r) => r.url().endsWith("/resend") && r.status() === 200);
    await resend.click();
    const view2 = await (await resent).json();
    await waitInOtp(page, (root) => /new code is on its way/.test(root.getElementById("resend-note").textContent));
    const second = await smsOnPanel(page, 2);
    assert.notEqual(second.code, first.code, "a resend rotates the code");
    assert.ok(await resend.isDisabled(), "back-off: disabled again");
    const again = await sampleCooldown(page, view2.resend_at, 1200);
    assertOnTheSecond(again);
    assert.ok(secsIn(again[0].label) > 30, `the longer cooldown: ${again[0].label}`);
    await screenshot(page, `cooldown-${name}-2-second-sms`);

    // The old code no longer works; the new one does.
    await typeCode(page, first.code);
    await page.waitForSelector("#check-error:not([hidden])", { timeout: 10_000 });
    assert.match(await otpText(page, "check-error"), /not right/);
    await typeCode(page, second.code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
  }, { base: server.url, viewport }))));
