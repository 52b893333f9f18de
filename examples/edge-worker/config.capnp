# workerd configuration for the otpgate edge worker example.
#
#   ./build.sh && OTPGATE_API_KEY=... SMSGATE_WEBHOOK_KEY=... npx workerd serve config.capnp
#
# serves http://127.0.0.1:8787 in front of an issuer at http://127.0.0.1:8080. Secrets come
# from the environment (`fromEnvironment`), never from this file.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .otpgateWorker),
    # Outbound fetches (the issuer, its JWKS). "local" and "private" let the worker reach an
    # issuer on 127.0.0.1 or the LAN; drop them when the issuer is on the public internet.
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "main") ],
);

const otpgateWorker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "pkg/otpgate.js", esModule = embed "pkg/otpgate.js"),
    (name = "pkg/otpgate_bg.wasm", wasm = embed "pkg/otpgate_bg.wasm"),
  ],
  bindings = [
    (name = "OTPGATE_ISSUER", fromEnvironment = "OTPGATE_ISSUER"),
    (name = "OTPGATE_RECEIPT_ISSUER", fromEnvironment = "OTPGATE_RECEIPT_ISSUER"),
    (name = "OTPGATE_AUDIENCE", fromEnvironment = "OTPGATE_AUDIENCE"),
    (name = "OTPGATE_APP", fromEnvironment = "OTPGATE_APP"),
    (name = "OTPGATE_API_KEY", fromEnvironment = "OTPGATE_API_KEY"),
    (name = "SMSGATE_WEBHOOK_KEY", fromEnvironment = "SMSGATE_WEBHOOK_KEY"),
    (name = "JWKS_TTL_SECS", fromEnvironment = "JWKS_TTL_SECS"),
  ],
  compatibilityDate = "2025-09-01",
  globalOutbound = "net",
);
