// Compiled with `tsc --noEmit` against the installed package's typings (tests-node): every
// export is typed (no `any`), and wrong options are compile errors.
import {
  parseSms, smsSegments, composeSms, appHash, verifyAppHash, verifyReceipt,
  verifyWebhookSignature, solvePow, receiveCode, OtpClient, toE164, errorCodes,
  type ErrorCode, type ParsedSms, type SmsSegments, type ComposedSms, type ReceiptClaims, type Verification,
  type CheckResult, type Jwks, type OtpError,
} from "otpgate";

const parsed: ParsedSms = parseSms("Your code is 123456\n@shop.example.com #123456");
const host: string | undefined = parsed.webotp?.host;
const iframe: string | null | undefined = parsed.webotp?.iframe_host;
const hash: string | null = parsed.app_hash;
const seg: SmsSegments = smsSegments("hello");
const enc: "GSM-7" | "UCS-2" = seg.encoding;
const composed: ComposedSms = composeSms({ app: "Shop", code: "123456", origin: "shop.example.com", layout: "hash_line" });
const bytes: number = composed.bytes;
const h: string = appHash("com.example.app", new Uint8Array([1, 2, 3]));
const ok: boolean = verifyAppHash(composed.text, h);
const jwks: Jwks = { keys: [{ kty: "OKP", crv: "Ed25519", x: "AAAA", kid: "k1" }] };
const claims: ReceiptClaims = verifyReceipt("a.b.c", jwks, { audience: "shop", issuer: "https://otp.example.com", leeway: 5 });
const phone: string = claims.phone_number;
const valid: boolean = verifyWebhookSignature("key", "{}", "1700000000", "00", { windowSecs: 60 });
const nonce: number = solvePow("v1.8.1.a.b", 1000);
const e164: string = toE164("06 12 34 56 78", "33", "0");
const codes: ErrorCode[] = errorCodes();
const wrong: ErrorCode = "wrong_code";
// @ts-expect-error: not one of the package's codes
const typo: ErrorCode = "wrong_cod";
const code: Promise<string> = receiveCode({ signal: new AbortController().signal });

async function flow(): Promise<string> {
  const client = new OtpClient("https://otp.example.com", { app: "shop", fetch: globalThis.fetch });
  const v: Verification = await client.start("+14155550123", { locale: "en" });
  const state: "queued" | "submitted" | "sent" | "delivered" | "failed" | "skipped" = v.delivery.state;
  const done: Verification = await client.waitForDelivery(v.id, { intervalMs: 500 });
  const r: CheckResult = await client.check(done.id, "123456");
  try {
    await client.resend(v.id);
  } catch (e) {
    const err = e as OtpError;
    const wait: number | undefined = err.retryAfter;
    const c: string = err.code;
    void wait; void c;
  }
  void state;
  return r.receipt;
}

// @ts-expect-error -- `audience` is required
verifyReceipt("a.b.c", jwks, { issuer: "x" });
// @ts-expect-error -- layout is a closed set
composeSms({ app: "Shop", code: "123456", layout: "sideways" });
// @ts-expect-error -- parseSms takes a string
parseSms(42);
// @ts-expect-error -- the result is not any
const n: number = parseSms("x").code;

void [host, iframe, hash, enc, bytes, ok, phone, valid, nonce, code, flow, n];
