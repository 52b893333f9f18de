// Typings of `otpgate/element`: the <otp-verify> custom element. Importing the entry defines
// the element (once); the types below make `document.querySelector("otp-verify")`,
// `document.createElement("otp-verify")` and its events typed.
import type { ErrorCode, ReceiptClaims } from "./otpgate.js";

/** `otp-sent`: a code is on its way (after "Send code", and after each resend). */
export interface OtpSentDetail {
  /** The verification id (`v_…`). */
  id: string;
  /** The number the code was sent to, E.164. */
  phone: string;
  /** RFC 3339: when this code expires. */
  expiresAt: string;
  /** RFC 3339: the earliest resend. */
  resendAt: string;
  /** Whether this is a resend of the same verification. */
  resend: boolean;
}

/** `otp-approved`: the issuer approved the code and the receipt verified here. */
export interface OtpApprovedDetail {
  /** The receipt, a compact EdDSA JWT: send it to your backend, which verifies it again. */
  receipt: string;
  /** Its claims, verified offline against the issuer's JWKS (audience and issuer checked). */
  claims: ReceiptClaims;
  /** The verified number, E.164 (the same as `claims.phone_number`). */
  phone: string;
  /** The verification id. */
  id: string;
  /** Milliseconds from "Send code" to the issuer's approval. */
  elapsedMs: number;
}

/** Where an `otp-error` happened. */
export type OtpErrorStage = "load" | "start" | "check" | "resend" | "receipt";

/** `otp-error`: a refusal or a failure, also shown to the person in words. */
export interface OtpErrorDetail {
  /** The stable code (an `ErrorCode` of the package or the issuer). */
  code: ErrorCode | (string & {});
  /** The sentence the element shows. */
  message: string;
  stage: OtpErrorStage;
  /** HTTP status, for refusals of the issuer. */
  status?: number;
  /** Seconds the issuer asked to wait (`Retry-After`). */
  retryAfter?: number;
  /** Wrong codes still allowed (after `wrong_code`). */
  attemptsLeft?: number;
  /** The issuer's request id. */
  requestId?: string;
  /** Stage `receipt`: the issuer's receipt that did not verify here (your backend may still check it). */
  receipt?: string;
}

/** The events of <otp-verify> (they bubble and cross shadow roots). */
export interface OtpVerifyElementEventMap extends HTMLElementEventMap {
  "otp-sent": CustomEvent<OtpSentDetail>;
  "otp-approved": CustomEvent<OtpApprovedDetail>;
  "otp-error": CustomEvent<OtpErrorDetail>;
}

/**
 * `<otp-verify issuer="https://otp.example.com" app="shop">`: phone entry, start, delivery,
 * code entry (WebOTP where the browser has it), every refusal explained, resend; dispatches
 * `otp-approved` with the verified receipt.
 *
 * Attributes: `issuer` (base URL, default: the page's origin), `app` (the issuer's app name),
 * `audience` (the receipts' `aud`, default: `app`), `receipt-issuer` (the receipts' `iss`,
 * default: `issuer`), `country` (ISO code preselected).
 */
export declare class OtpVerifyElement extends HTMLElement {
  /** Attribute `issuer`, without a trailing slash; the page's origin when absent. */
  issuer: string;
  /** Attribute `app`. */
  app: string;
  /** Back to the number step (kept unless `keepNumber` is false); cancels a verification in progress. */
  reset(options?: { keepNumber?: boolean }): void;
  addEventListener<K extends keyof OtpVerifyElementEventMap>(
    type: K,
    listener: (this: OtpVerifyElement, ev: OtpVerifyElementEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof OtpVerifyElementEventMap>(
    type: K,
    listener: (this: OtpVerifyElement, ev: OtpVerifyElementEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    "otp-verify": OtpVerifyElement;
  }
}
