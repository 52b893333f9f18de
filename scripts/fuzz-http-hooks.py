"""schemathesis hooks of scripts/fuzz-http.sh (FUZZ_HTTP_SCOPE=integrations).

Signs the Supabase Send SMS hook calls as Supabase does (Standard Webhooks: HMAC-SHA256 of
`id.timestamp.body` under the secret in FUZZ_HTTP_SUPABASE_SECRET, `v1,<base64>`), so that
the fuzzed payloads reach the handler. Only a call whose three `webhook-*` headers schemathesis
generated as the document describes them is signed, with its own `webhook-id` and a fresh
timestamp: a case whose headers are negative data (one missing or empty) stays unsigned and
must be refused. The signature is made over the exact bytes sent (a requests auth hook runs on the
prepared request).
"""

import base64
import hashlib
import hmac
import os
import time

import requests
import schemathesis

HOOK_PATH = "/v1/hooks/supabase/send-sms"
_SECRET = base64.b64decode(os.environ["FUZZ_HTTP_SUPABASE_SECRET"].removeprefix("v1,whsec_"))


def _valid_id(value):
    # The issuer's rule (otpgate_core::standard_webhooks::valid_id).
    return isinstance(value, str) and 0 < len(value) <= 255 and all(33 <= ord(c) <= 126 for c in value)


class _SignLikeSupabase(requests.auth.AuthBase):
    def __call__(self, r):
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        msg_id = r.headers["webhook-id"]
        ts = str(int(time.time()))
        mac = hmac.new(_SECRET, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        r.headers["webhook-timestamp"] = ts
        r.headers["webhook-signature"] = "v1," + base64.b64encode(mac).decode()
        return r


def _headers_positive(case):
    """Whether schemathesis made the headers to match the document (not negative data)."""
    meta = case.meta
    if meta is None:
        return True
    info = meta.components.get("header")
    mode = info.mode if info is not None else meta.generation.mode
    return not mode.is_negative


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != HOOK_PATH or not _headers_positive(case):
        return
    headers = {k.lower(): v for k, v in (case.headers or {}).items()}
    present = all(headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if present and _valid_id(headers["webhook-id"]):
        kwargs["auth"] = _SignLikeSupabase()
