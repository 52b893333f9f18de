"""Drives the official clients against a real `otpgate serve`, one JSON request per line
on stdin, one JSON answer per line on stdout (crates/otpgate-server/tests/api/official_clients.rs).

- `supabase`: signs Supabase's payload the way Supabase Auth does (internal/hooks, v0http:
  a UUID v4 `webhook-id`, `webhook-timestamp` in Unix seconds, each configured secret
  `v1,whsec_<base64>` stripped of its `v1,` and given to the `standardwebhooks` library's
  `Webhook(...).sign`, the signatures joined by ", ") and posts it.
- `twilio_*`: the official `twilio` package with `client.verify.base_url` pointed at
  otpgate; answers the instance's properties, or the TwilioRestException's status, code and
  message.
"""

import json
import sys
import uuid
from datetime import datetime, timezone

import requests
from standardwebhooks import Webhook
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

PROPS = (
    "sid", "service_sid", "account_sid", "to", "channel", "status", "valid", "lookup",
    "amount", "payee", "send_code_attempts", "date_created", "date_updated", "sna", "url",
)


def supabase(req):
    """Sends a Send SMS hook call signed as Supabase signs it."""
    payload = req["payload"]
    msg_id = req.get("id") or str(uuid.uuid4())
    ts = req.get("timestamp")
    when = (
        datetime.now(tz=timezone.utc)
        if ts is None
        else datetime.fromtimestamp(ts, tz=timezone.utc)
    )
    signatures = []
    for secret in req["secrets"]:
        assert secret.startswith("v1,"), "Supabase refuses other secrets"
        # What Supabase signs is the body it sends; `signed` lets a test tamper after.
        signed = req.get("signed", payload)
        signatures.append(Webhook(secret[len("v1,"):]).sign(msg_id, when, signed))
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": ", ".join(signatures),
        "Accept-Encoding": "identity",
    }
    res = requests.post(req["url"], data=payload.encode(), headers=headers, timeout=10)
    try:
        body = res.json()
    except ValueError:
        body = res.text
    return {
        "status": res.status_code,
        "body": body,
        "content_type": res.headers.get("content-type"),
        "retry_after": res.headers.get("retry-after"),
        "id": msg_id,
    }


CLIENTS = {}


def twilio_client(req):
    key = (req["base_url"], req["account_sid"], req["auth_token"])
    if key not in CLIENTS:
        client = Client(req["account_sid"], req["auth_token"], http_client=TwilioHttpClient(timeout=10))
        # What an application does to switch from Twilio to otpgate.
        client.verify.base_url = req["base_url"]
        CLIENTS[key] = client
    return CLIENTS[key]


def instance(obj):
    out = {}
    for p in PROPS:
        if not hasattr(obj, p):
            continue
        v = getattr(obj, p)
        out[p] = v.isoformat() if isinstance(v, datetime) else v
        # A date the SDK could not parse stays a string: say which.
        if p.startswith("date_"):
            out[p + "_parsed"] = isinstance(v, datetime)
    out["type"] = type(obj).__name__
    return out


def twilio(req):
    service = twilio_client(req).verify.v2.services(req["service_sid"])
    op = req["op"]
    try:
        if op == "twilio_create":
            args = {"to": req["to"], "channel": req.get("channel", "sms")}
            if "locale" in req:
                args["locale"] = req["locale"]
            if "custom_code" in req:
                args["custom_code"] = req["custom_code"]
            obj = service.verifications.create(**args)
        elif op == "twilio_check":
            args = {"code": req["code"]}
            if "to" in req:
                args["to"] = req["to"]
            if "verification_sid" in req:
                args["verification_sid"] = req["verification_sid"]
            obj = service.verification_checks.create(**args)
        elif op == "twilio_fetch":
            obj = service.verifications(req["sid"]).fetch()
        elif op == "twilio_update":
            obj = service.verifications(req["sid"]).update(status=req["status"])
        else:
            raise ValueError(f"unknown op {op}")
    except TwilioRestException as e:
        return {"error": {"status": e.status, "code": e.code, "msg": e.msg, "uri": e.uri}}
    return {"ok": instance(obj)}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req["op"] == "supabase":
                out = supabase(req)
            elif req["op"].startswith("twilio_"):
                out = twilio(req)
            else:
                out = {"driver_error": f"unknown op {req['op']}"}
        except Exception as e:  # noqa: BLE001 - the test reads what went wrong
            out = {"driver_error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
