// The <otp-verify> element as a front-end developer uses it from the package: one import
// defines it; the typings make querySelector, createElement and its events typed.
import "otpgate/element";
import type { OtpApprovedDetail, OtpErrorDetail, OtpSentDetail, OtpVerifyElement } from "otpgate/element";

const status = document.getElementById("status");
if (!status) throw new Error("#status missing");
const show = (text: string): void => {
  status.textContent = text;
};

// HTMLElementTagNameMap: the tag name gives the element's type, no cast.
const el: OtpVerifyElement | null = document.querySelector("otp-verify");
if (!el) throw new Error("<otp-verify> missing");
el.issuer = import.meta.env.VITE_OTPGATE_ISSUER;
el.setAttribute("audience", import.meta.env.VITE_OTPGATE_AUDIENCE);

el.addEventListener("otp-sent", (ev) => {
  const sent: OtpSentDetail = ev.detail;
  show(`sent:${sent.id}:${sent.phone}`);
});
el.addEventListener("otp-approved", (ev) => {
  const { claims, receipt }: OtpApprovedDetail = ev.detail;
  const verified: true = claims.phone_number_verified;
  show(`verified:${claims.phone_number}:${String(verified)}:${receipt.split(".").length}`);
});
el.addEventListener("otp-error", (ev) => {
  const err: OtpErrorDetail = ev.detail;
  show(`error:${err.stage}:${err.code}`);
});

// createElement is typed too: a second element, made the way a framework makes one.
const made: OtpVerifyElement = document.createElement("otp-verify");
made.app = "demo";
void made;

customElements.whenDefined("otp-verify").then(() => show("ready"), (e: unknown) => show(`failed: ${String(e)}`));
