// A small real HTTP proxy for the client module's tests (scripts/test.sh starts it in front of
// the dev-mode `otpgate serve`): it forwards every request to the issuer unchanged, but the
// first answer to each POST carrying an Idempotency-Key it has not seen yet is dropped (the
// issuer handles the request, sends its SMS, and the proxy then closes the client's connection
// without a byte). What the client sees is a lost answer after the SMS went out: the case its
// retry with the same key must survive without a second SMS.
//
// Every answer carries `Connection: close`, so no connection is reused: browsers and undici
// resend a request on their own only when a reused connection fails, and the retry the tests
// count must be the client's.
//
//   node tests/support/drop-proxy.mjs --upstream http://127.0.0.1:8080 [--port 0]
//
// Prints `listening http://127.0.0.1:PORT` once ready. `GET /_proxy/log` answers (CORS `*`)
// with what it saw: [{method, path, key, dropped}].
import http from "node:http";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const upstream = new URL(arg("upstream", process.env.OTPGATE_TEST_SERVER ?? ""));
const port = Number(arg("port", "0"));
const seen = new Set();
const log = [];

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/_proxy/log") {
    res.writeHead(200, {
      "content-type": "application/json",
      "access-control-allow-origin": "*",
      connection: "close",
    });
    res.end(JSON.stringify(log));
    return;
  }
  const key = req.headers["idempotency-key"];
  const drop = req.method === "POST" && typeof key === "string" && !seen.has(key);
  if (drop) seen.add(key);
  log.push({ method: req.method, path: req.url, key: key ?? null, dropped: drop });

  const headers = { ...req.headers, host: upstream.host };
  delete headers.connection;
  const out = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
    (answer) => {
      const chunks = [];
      answer.on("data", (c) => chunks.push(c));
      answer.on("end", () => {
        if (drop) {
          // The issuer has answered (and sent its SMS): the answer is lost on the way back.
          req.socket.destroy();
          return;
        }
        const h = { ...answer.headers, connection: "close" };
        delete h["transfer-encoding"];
        delete h["keep-alive"];
        res.writeHead(answer.statusCode ?? 502, h);
        res.end(Buffer.concat(chunks));
      });
    },
  );
  out.on("error", (e) => {
    res.writeHead(502, { "content-type": "text/plain", connection: "close" });
    res.end(`drop-proxy: upstream error: ${e.message}`);
  });
  req.pipe(out);
});
server.keepAliveTimeout = 0;

server.listen(port, "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)));
