//! TypeScript interfaces of the options and results, emitted into the generated `.d.ts`.
//! The exports name them with `unchecked_param_type` / `unchecked_return_type`, so no
//! option or result is typed `any`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** An origin-bound one-time code line (`@host #code [@iframe_host]`). */
export interface WebOtpLine {
  host: string;
  code: string;
  iframe_host: string | null;
}

/** What `parseSms` returns: the same object `otpgate sms parse` prints. */
export interface ParsedSms {
  code: string | null;
  webotp: WebOtpLine | null;
  app_hash: string | null;
}

/** What `smsSegments` returns: the same object `otpgate sms segments` prints. */
export interface SmsSegments {
  encoding: "GSM-7" | "UCS-2";
  segments: number;
  /** Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2). */
  units: number;
}

/** Options of `composeSms` (as `otpgate sms compose`). */
export interface ComposeSmsOptions {
  /** The app name shown to the user. */
  app: string;
  /** The one-time code: 4 to 10 ASCII letters or digits. */
  code: string;
  /** The host the code is bound to for WebOTP / Safari AutoFill, e.g. `shop.example.com`. */
  origin?: string;
  /** The host of a cross-site iframe where the code is entered. */
  iframeOrigin?: string;
  /** The 11-character SMS Retriever app hash. */
  appHash?: string;
  /** The recipient's locale (BCP 47); built-in texts: en es fr de pt it nl. */
  locale?: string;
  /** A template for the human text with `{app}`, `{code}`, `{origin}`, `{app_hash}`. */
  template?: string;
  /** Where the app hash goes (default `"combined"`). */
  layout?: "combined" | "hash_line";
}

/** What `composeSms` returns: the same object `otpgate sms compose --json` prints. */
export interface ComposedSms {
  text: string;
  locale: string;
  encoding: "GSM-7" | "UCS-2";
  segments: number;
  units: number;
  bytes: number;
  ucs2_forced_by_template: boolean;
}

/** One Ed25519 public key of the issuer's JWKS. */
export interface Jwk {
  kty: "OKP" | string;
  crv: "Ed25519" | string;
  x: string;
  kid: string;
  alg?: string;
  use?: string;
}

/** The issuer's `/.well-known/jwks.json`. */
export interface Jwks {
  keys: Jwk[];
}

/** Options of `verifyReceipt`. */
export interface VerifyReceiptOptions {
  /** The expected `aud` (the app). */
  audience: string;
  /** The expected `iss` (the issuer's public URL). */
  issuer: string;
  /** Now, in Unix seconds; defaults to `Date.now() / 1000`. */
  now?: number;
  /** Tolerated clock skew in seconds (default 0). */
  leeway?: number;
}

/** The claims of a verified receipt. */
export interface ReceiptClaims {
  iss: string;
  aud: string;
  sub: string;
  jti: string;
  phone_number: string;
  phone_number_verified: true;
  iat: number;
  exp: number;
}

/** Options of `verifyWebhookSignature`. */
export interface VerifyWebhookOptions {
  /** Now, in Unix seconds; defaults to `Date.now() / 1000`. */
  now?: number;
  /** Accepted clock difference in seconds (default 300). */
  windowSecs?: number;
}

/** The part of `AbortSignal` this package uses. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** Options of `receiveCode`. */
export interface ReceiveCodeOptions {
  signal?: AbortSignalLike;
}

/** The part of a `fetch` `Response` this package reads. */
export interface FetchResponseLike {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/**
 * A `fetch`-compatible function. It is called as `fetch(url, {method, headers, body?, signal?})`
 * with `headers` a plain object of strings; `init` is typed loosely so that the DOM's, Node's
 * and workers' `fetch` (whose `RequestInit` types differ) all fit.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type FetchLike = (url: string, init?: any) => Promise<FetchResponseLike>;

/** Options of `new OtpClient`. */
export interface OtpClientOptions {
  /** Sent as `Authorization: Bearer <apiKey>`. Server-side only: never ship it to a browser. */
  apiKey?: string;
  /** The default app of `start`. */
  app?: string;
  /** Defaults to the global `fetch`. */
  fetch?: FetchLike;
}

/** Options of `OtpClient.start`. */
export interface StartOptions {
  app?: string;
  /** A BCP 47 tag choosing the SMS template (`en`, `pt-BR`...). */
  locale?: string;
}

/** Options of `OtpClient.waitForDelivery`. */
export interface WaitForDeliveryOptions {
  signal?: AbortSignalLike;
  /** Pause between polls, in ms (default 1000, at least 250). */
  intervalMs?: number;
}

export type VerificationStatus = "pending" | "approved" | "cancelled" | "expired" | "max_attempts_reached";
export type DeliveryState = "queued" | "submitted" | "sent" | "delivered" | "failed" | "skipped";

/** A verification as the issuer shows it. */
export interface Verification {
  id: string;
  status: VerificationStatus;
  /** RFC 3339. */
  expires_at: string;
  /** RFC 3339: the earliest resend. */
  resend_at: string;
  attempts_left: number;
  delivery: { state: DeliveryState; gateway?: string; updated_at?: string };
}

/** What a successful `OtpClient.check` resolves with. */
export interface CheckResult {
  status: "approved";
  /** The receipt: a compact EdDSA JWT; verify it with `verifyReceipt`. */
  receipt: string;
}

/**
 * Every error thrown or rejected by this package: a JS `Error` with `name === "OtpError"`
 * and a stable snake_case `code` (the issuer API's codes for HTTP errors).
 */
export interface OtpError extends Error {
  name: "OtpError";
  code: string;
  /** HTTP status, for errors answered by the issuer. */
  status?: number;
  /** Seconds to wait before retrying (`Retry-After`). */
  retryAfter?: number;
  /** Wrong codes still allowed (after `wrong_code`). */
  attemptsLeft?: number;
  /** The issuer's request id, also in its audit log. */
  requestId?: string;
  /** The proof-of-work challenge of a `pow_required` error. */
  challenge?: string;
}
"#;
