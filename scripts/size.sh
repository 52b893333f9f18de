#!/usr/bin/env bash
# The npm package's size: raw and gzip -9 of what an app ships (pkg/otpgate_bg.wasm, the JS
# glue pkg/otpgate.js and the Node entry pkg/node.mjs, built by scripts/build-pkg.sh), checked
# against the budget (90 KiB gzipped; the aim is 60), the <otp-verify> element's JS on a line
# of its own (outside the budget), and what each part costs: the wasm's
# functions and data by crate, from `twiggy top` over the named wasm that build-pkg.sh keeps in
# target/otpgate-pkg/ (wasm-bindgen's output before wasm-opt: names intact).
#
# A crate's share is the shallow size of its symbols (monomorphised generics count for the
# crate that defines the code, so `serde_wasm_bindgen` holds the Deserializer instantiated for
# every option bag); "gz est." spreads the gzipped code and data sections over them by raw
# share. An over-budget package is fatal (exit 1), so scripts/build-pkg.sh and the test run fail
# on it; OTPGATE_SIZE_ENFORCE=0 only reports.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUDGET=${OTPGATE_SIZE_BUDGET:-92160}
AIM=61440
NAMED=${CARGO_TARGET_DIR:-$ROOT/target}/otpgate-pkg/otpgate_bg.named.wasm

cd pkg
total_raw=0
total_gz=0
printf '%-18s %9s %9s\n' file raw gzip
for f in otpgate_bg.wasm otpgate.js node.mjs; do
  raw=$(wc -c <"$f")
  gz=$(gzip -9c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
  printf '%-18s %9d %9d\n' "$f" "$raw" "$gz"
done
printf '%-18s %9d %9d   (%s KiB gzipped; budget %d, aim %d)\n' total "$total_raw" "$total_gz" \
  "$(awk "BEGIN{printf \"%.1f\", $total_gz/1024}")" "$BUDGET" "$AIM"
# The <otp-verify> element's JS (entry `otpgate/element`): loaded only by pages that use the
# element, so outside the budget, reported on its own line.
if [ -f element.js ]; then
  printf '%-18s %9d %9d   (the <otp-verify> element, otpgate/element; outside the budget)\n' element.js \
    "$(wc -c <element.js)" "$(gzip -9c element.js | wc -c)"
fi

if ! command -v twiggy >/dev/null 2>&1; then
  echo "size: twiggy not installed (scripts/setup.sh installs it): no breakdown"
elif [ ! -f "$NAMED" ]; then
  echo "size: $NAMED missing (run scripts/build-pkg.sh): no breakdown"
else
  echo
  echo "wasm by crate (twiggy top, shallow bytes before wasm-opt; gz est. = share of the shipped wasm's gzipped code+data)"
  twiggy top -n 1000000 -f csv "$NAMED" >"$ROOT/target/otpgate-pkg/twiggy.csv"
  python3 - "$ROOT/target/otpgate-pkg/twiggy.csv" otpgate_bg.wasm <<'PY'
import collections, csv, gzip, re, sys

rows = list(csv.DictReader(open(sys.argv[1])))
wasm = open(sys.argv[2], "rb").read()

def leb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7F) << s; s += 7
        if x < 0x80:
            return r, i

# gzipped size of the shipped wasm's code (10) and data (11) sections
i, shipped_gz = 8, 0
while i < len(wasm):
    sid = wasm[i]; n, j = leb(wasm, i + 1)
    if sid in (10, 11):
        shipped_gz += len(gzip.compress(wasm[j:j + n], 9))
    i = j + n

GENERIC = {"T", "F", "D", "E", "R", "S", "I", "A", "B", "K", "V", "str", "char", "bool", "dyn",
           "u8", "u16", "u32", "u64", "i32", "i64", "f64", "usize", "isize", "[u8]", "[T]"}

def crate(name):
    if name.startswith("data segment"):
        return "(data: strings, tables)"
    if "subsection" in name or name.startswith(("custom section", "wasm magic", "type[", "table[", "elem[", "global[", "memory[")):
        return None                      # names, producers, headers: not shipped
    if name.startswith("import "):
        return "(imports from the JS glue)"
    n = re.sub(r"\[[0-9a-f]+\]", "", name).lstrip("<&").removeprefix("mut ").removeprefix("dyn ")
    m = re.match(r"([\w\[\]]+)(?:::[^ ]*)?(?: as ([\w]+))?", n)
    if not m:
        return "(other)"
    head, trait = m.group(1), m.group(2)
    if head in GENERIC or head.startswith("["):
        head = trait or "(other)"
    if "::" not in n and not name.startswith("<"):
        return "(exports and shims)" if re.fullmatch(r"[A-Za-z_$][\w$]*", name) else "(other)"
    return head

sizes = collections.Counter()
for r in rows:
    c = crate(r["Name"])
    if c:
        sizes[c] += int(r["ShallowSize"])
total = sum(sizes.values())
print(f"{'crate':32} {'bytes':>9} {'share':>6} {'gz est.':>8}")
for c, b in sizes.most_common():
    if b * 1000 < total:
        continue
    print(f"{c:32} {b:9d} {100*b/total:5.1f}% {b*shipped_gz/total:8.0f}")
rest = sum(b for b in sizes.values() if b * 1000 < total)
print(f"{'(each under 0.1%)':32} {rest:9d} {100*rest/total:5.1f}% {rest*shipped_gz/total:8.0f}")
print(f"{'total':32} {total:9d}        {shipped_gz:8d}")

# what serde's error messages pull in from core: the float printer and Debug of strings
groups = {
    "core float printing (serde's `invalid type: floating point`)": r"flt2dec|fmt::float|num::bignum|diy_float",
    "core Debug of str/char (serde's `invalid value: string \"..\"`)": r"unicode::printable|<str as core[^ ]*::fmt::Debug>|escape_debug",
}
print()
for label, pat in groups.items():
    b = sum(int(r["ShallowSize"]) for r in rows if re.search(pat, r["Name"]))
    print(f"  of which {label}: {b} bytes, gz est. {b*shipped_gz/total:.0f}")
PY
fi

if [ "$total_gz" -gt "$BUDGET" ]; then
  echo "size: over budget by $((total_gz - BUDGET)) bytes gzipped" >&2
  [ "${OTPGATE_SIZE_ENFORCE:-1}" = 0 ] || exit 1
else
  echo "size: within budget by $((BUDGET - total_gz)) bytes gzipped"
fi
exit 0
