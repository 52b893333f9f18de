// A page as a front-end developer writes it with the `otpgate` package: start a verification,
// check the code the user types, and verify the issuer's receipt offline against its JWKS.
import init, {
  OtpClient,
  errorCodes,
  parseSms,
  toE164,
  verifyReceipt,
  type CheckResult,
  type ErrorCode,
  type Jwks,
  type OtpError,
  type ReceiptClaims,
  type Verification,
} from "otpgate";

const issuer: string = import.meta.env.VITE_OTPGATE_ISSUER;
const audience: string = import.meta.env.VITE_OTPGATE_AUDIENCE;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};
const status = $<HTMLParagraphElement>("status");
const show = (text: string): void => {
  status.textContent = text;
};

/** An `OtpError` as the typings describe it, told apart from anything else thrown. */
function isOtpError(e: unknown): e is OtpError {
  return e instanceof Error && e.name === "OtpError" && typeof (e as OtpError).code === "string";
}

/** A sentence for the user; branches on the stable code, never on the message. */
function explain(e: unknown): string {
  if (!isOtpError(e)) return `unexpected: ${String(e)}`;
  const known: ErrorCode[] = ["wrong_code", "rate_limited", "invalid_phone", "network_error"];
  const code = e.code;
  if (code === "wrong_code") return `wrong code, ${e.attemptsLeft ?? 0} tries left`;
  if (code === "rate_limited" || code === "resend_cooldown") return `wait ${e.retryAfter ?? 1} s`;
  return known.includes(code as ErrorCode) ? `error: ${code}` : `error: ${code} (${e.message})`;
}

async function main(): Promise<void> {
  await init();
  const client = new OtpClient(issuer, { app: audience });
  const codes: readonly ErrorCode[] = errorCodes();
  if (!codes.includes("idempotency_key_reused")) throw new Error("errorCodes() is incomplete");
  // parseSms' result is typed with the wire's snake_case shape.
  const sample = parseSms("Your code is 123456\n@shop.example #123456");
  const sampleHost: string | undefined = sample.webotp?.host;
  if (sample.code !== "123456" || sampleHost !== "shop.example") throw new Error("parseSms");

  let started: Verification | undefined;
  $<HTMLFormElement>("start").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void (async () => {
      try {
        const phone = toE164($<HTMLInputElement>("phone").value, "1", "1");
        started = await client.start(phone, { locale: "en" });
        $<HTMLFormElement>("check").hidden = false;
        show(`sent:${started.id}:${started.delivery.state}`);
      } catch (e) {
        show(explain(e));
      }
    })();
  });

  $<HTMLFormElement>("check").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void (async () => {
      if (!started) return;
      try {
        const result: CheckResult = await client.check(started.id, $<HTMLInputElement>("code").value);
        const jwks = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as Jwks;
        const claims: ReceiptClaims = verifyReceipt(result.receipt, jwks, { audience, issuer });
        const verified: true = claims.phone_number_verified;
        show(`verified:${claims.phone_number}:${String(verified)}`);
      } catch (e) {
        show(explain(e));
      }
    })();
  });

  $<HTMLButtonElement>("send").disabled = false;
  show("ready");
}

main().catch((e: unknown) => show(`failed: ${String(e)}`));
