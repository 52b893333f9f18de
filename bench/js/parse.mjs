// Timing of parseSms in Node through the built package (pkg/): `node bench/js/parse.mjs`.
// Prints ns per call for a typical OTP SMS (100k calls after a warm-up).
import { parseSms, smsSegments } from "../../pkg/node.mjs";

const SMS = "<#> Your Shop code is 482913\n@shop.example.com #482913 kFUwfusCq/+";
const N = 100_000;
for (let i = 0; i < 10_000; i++) parseSms(SMS);
for (const [name, f] of [["parseSms", parseSms], ["smsSegments", smsSegments]]) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) f(SMS);
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${name}: ${ns.toFixed(0)} ns/call (${N} calls, Node ${process.version})`);
}
