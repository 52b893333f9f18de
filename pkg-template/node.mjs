// The Node entry of otpgate: loads the WebAssembly synchronously, so every export is usable
// as soon as `import "otpgate"` (or `require("otpgate")` on Node >= 20.19) returns.
import { readFileSync } from "node:fs";
import { initSync } from "./otpgate.js";

initSync({ module: readFileSync(new URL("./otpgate_bg.wasm", import.meta.url)) });

export * from "./otpgate.js";
