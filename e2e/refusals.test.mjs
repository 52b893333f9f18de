// Refusals in a real browser against a real `otpgate serve` (dev mode): a wrong code shows
// the attempts left; the resend button waits out the cooldown with a live countdown; a
// resend rotates the code (the old one stops working).

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  withDemo, freshPhone, startVerification, smsOnPanel, typeCode, screenshot,
} from "./helpers.mjs";

/** The same number of digits, every digit changed: certainly not the code. */
function wrongOf(code) {
  return [...code].map((c) => (/\d/.test(c) ? String((Number(c) + 1) % 10) : c)).join("");
}

test("wrong code: refused with the attempts left, then the right code still works", () =>
  withDemo(async ({ page }) => {
    await startVerification(page, freshPhone());
    const { code } = await smsOnPanel(page, 1);

    await typeCode(page, wrongOf(code));
    await page.waitForSelector("#check-error:not([hidden])", { timeout: 10_000 });
    const first = await page.textContent("#check-error");
    assert.match(first, /not right\. (\d+) attempts? left\./);
    const left1 = Number(/(\d+) attempts? left/.exec(first)[1]);
    assert.equal(await page.getAttribute("#code", "aria-invalid"), "true");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "code", "focus back on the field");
    await screenshot(page, "wrong-code-1-attempts-left");

    await typeCode(page, wrongOf(wrongOf(code)));
    await page.waitForFunction(
      (prev) => {
        const t = document.querySelector("#check-error").textContent;
        return t !== "" && t !== prev;
      },
      first,
      { timeout: 10_000 },
    );
    const left2 = Number(/(\d+) attempts? left/.exec(await page.textContent("#check-error"))[1]);
    assert.equal(left2, left1 - 1, "every wrong code costs one attempt");

    await typeCode(page, code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
    await screenshot(page, "wrong-code-2-then-approved");
  }));

test("resend: disabled with a live countdown, then a new code replaces the old one", { timeout: 180_000 }, () =>
  withDemo(async ({ page }) => {
    await startVerification(page, freshPhone());
    const first = await smsOnPanel(page, 1);

    const resend = page.locator("#resend-btn");
    assert.ok(await resend.isDisabled(), "no resend inside the cooldown");
    const label1 = await resend.textContent();
    const m = /Resend code \((?:(\d+):)?(\d+)( s)?\)/.exec(label1);
    assert.ok(m, `countdown on the button: ${label1}`);
    await screenshot(page, "resend-1-cooldown");
    // The countdown is live: the label changes on its own.
    await page.waitForFunction((l) => document.querySelector("#resend-btn").textContent !== l, label1, { timeout: 5_000 });

    // Wait the cooldown out (30 s by default), then resend.
    await page.waitForSelector("#resend-btn:not([disabled])", { timeout: 120_000 });
    assert.equal((await resend.textContent()).trim(), "Resend code");
    await resend.click();
    await page.waitForFunction(() => /new code is on its way/.test(document.querySelector("#resend-note").textContent), null, { timeout: 10_000 });
    const second = await smsOnPanel(page, 2);
    assert.notEqual(second.code, first.code, "a resend rotates the code");
    // Back-off: the button is disabled again with a new countdown.
    assert.ok(await resend.isDisabled());
    assert.match(await resend.textContent(), /Resend code \(/);
    await screenshot(page, "resend-2-second-sms");

    // The old code no longer works; the new one does.
    await typeCode(page, first.code);
    await page.waitForSelector("#check-error:not([hidden])", { timeout: 10_000 });
    assert.match(await page.textContent("#check-error"), /not right/);
    await typeCode(page, second.code);
    await page.waitForSelector("#result:not([hidden])", { timeout: 15_000 });
  }));
