// Node: the same exports as the web build, already initialised (no `init()` to call).
export * from "./otpgate.js";
