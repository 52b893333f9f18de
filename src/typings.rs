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
 * The stable codes of the issuer API and of this package (`errorCodes()` lists them at run
 * time). A newer issuer may answer a code not listed here: compare, never switch exhaustively.
 */
export type ErrorCode =
  | "invalid_json"
  | "invalid_request"
  | "bad_request"
  | "invalid_phone"
  | "unknown_country_code"
  | "unknown_app"
  | "invalid_locale"
  | "invalid_code"
  | "pow_malformed"
  | "pow_forged"
  | "pow_expired"
  | "pow_insufficient"
  | "invalid_webhook"
  | "unsupported_media_type"
  | "body_too_large"
  | "unauthorized"
  | "invalid_api_key"
  | "forbidden"
  | "destination_not_allowed"
  | "pow_replayed"
  | "missing_signature"
  | "bad_timestamp"
  | "stale_timestamp"
  | "bad_signature"
  | "no_signing_key"
  | "not_found"
  | "method_not_allowed"
  | "timeout"
  | "already_used"
  | "conflict"
  | "expired"
  | "cancelled"
  | "wrong_code"
  | "pow_required"
  | "rate_limited"
  | "gone"
  | "no_attempts_left"
  | "resend_cooldown"
  | "too_many_sends"
  | "too_many_starts"
  | "number_locked"
  | "idempotency_key_reused"
  | "store_unavailable"
  | "no_gateway_capacity"
  | "gateway_unavailable"
  | "not_ready"
  | "unavailable"
  | "internal_error"
  | "network_error"
  | "bad_response"
  | "server_error"
  | "fetch_unavailable"
  | "error"
  | "aborted"
  | "invalid_argument"
  | "pow_unsolved"
  | "webotp_unsupported"
  | "webotp_failed"
  | "jwks_unavailable"
  | "internal"
  | "receipt_malformed"
  | "receipt_unsupported_alg"
  | "receipt_unknown_key"
  | "receipt_bad_signature"
  | "receipt_expired"
  | "receipt_not_yet_valid"
  | "receipt_wrong_audience"
  | "receipt_wrong_issuer"
  | "receipt_not_verified";

/**
 * Every error thrown or rejected by this package: a JS `Error` with `name === "OtpError"`
 * and a stable snake_case `code` (the issuer API's codes for HTTP errors).
 */
export interface OtpError extends Error {
  name: "OtpError";
  /** An `ErrorCode`, a module's own code (`bad_template`, ...) or a newer issuer's code. */
  code: ErrorCode | (string & {});
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

#[cfg(test)]
mod tests {
    use otpgate_core::wire::ErrorCode;

    /// The `ErrorCode` union of the typings is the core's list, in its order.
    #[test]
    fn error_code_union_is_the_core_list() {
        // This file's own text: the macro consumes the section's constant.
        let text = include_str!("typings.rs");
        let start = text
            .find("export type ErrorCode =")
            .expect("the union is declared");
        let union = &text[start..];
        let union = &union[..union.find(';').expect("the union ends")];
        let listed: Vec<&str> = union
            .lines()
            .filter_map(|l| l.trim().strip_prefix("| \"")?.strip_suffix('"'))
            .collect();
        let core: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, core);
    }
}
