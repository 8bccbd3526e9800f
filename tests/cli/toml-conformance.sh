#!/bin/sh
# toml-conformance.sh - the official toml-test vectors against our parser.
#
# Every valid/**.toml must decode (through $BUILD/tests/toml-decoder, the
# toml-test decoder interface) to JSON equal to its .json twin; every
# invalid/**.toml must be refused.  One python3 process runs all cases and
# compares semantically the way toml-test does: floats by value (nan equal
# to nan), date-times after normalising 't'/'z'/' ' and fractional zeros.
# Prints one PASS/FAIL line per case.
. "$(dirname "$0")/lib.sh"

SUITE=${TOML_TEST_DIR:-$TOP/../shared/toml-test}
DECODER=${BUILD_ABS:?}/tests/toml-decoder

if [ ! -d "$SUITE/valid" ] || [ ! -d "$SUITE/invalid" ]; then
	t_failed "toml-test suite present" "no conformance suite at $SUITE (set TOML_TEST_DIR)"
	t_done
fi
if [ ! -x "$DECODER" ]; then
	t_failed "toml-decoder built" "missing $DECODER"
	t_done
fi

python3 - "$SUITE" "$DECODER" <<'EOF'
import json, math, os, re, subprocess, sys
from decimal import Decimal

suite, decoder = sys.argv[1], sys.argv[2]
fails = 0

DT = re.compile(r'^(?:(\d{4})-(\d{2})-(\d{2}))?[Tt ]?'
                r'(?:(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?'
                r'([Zz]|[+-]\d{2}:\d{2})?$')

def norm_dt(s):
    m = DT.match(s)
    if not m:
        return ('bad', s)
    y, mo, d, h, mi, sec, frac, off = m.groups()
    frac = Decimal('0.' + frac) if frac else Decimal(0)
    if off in ('Z', 'z', '-00:00'):
        off = '+00:00'
    return (y, mo, d, h, mi, sec, frac.normalize(), off)

def fval(s):
    return float(s.replace('_', ''))

def same(want, got, path):
    if isinstance(want, dict) and set(want) == {'type', 'value'} and \
            isinstance(want.get('type'), str) and not isinstance(want['value'], (dict, list)):
        if not (isinstance(got, dict) and set(got) == {'type', 'value'}):
            return '%s: want a %s, got %r' % (path, want['type'], got)
        t = want['type']
        if got['type'] != t:
            return '%s: want type %s, got %s' % (path, t, got['type'])
        w, g = want['value'], got['value']
        if t == 'float':
            a, b = fval(w), fval(g)
            if (math.isnan(a) and math.isnan(b)) or a == b:
                return None
        elif t == 'integer':
            if int(w) == int(g):
                return None
        elif t in ('datetime', 'datetime-local', 'date-local', 'time-local'):
            if norm_dt(w) == norm_dt(g):
                return None
        elif w == g:
            return None
        return '%s: want %s %r, got %r' % (path, t, w, g)
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return '%s: want a table, got %r' % (path, got)
        if set(want) != set(got):
            return '%s: keys differ: want %s, got %s' % (
                path, sorted(want), sorted(got))
        for k in want:
            r = same(want[k], got[k], path + '.' + k)
            if r:
                return r
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return '%s: want an array of %d, got %r' % (path, len(want), got)
        for i, (a, b) in enumerate(zip(want, got)):
            r = same(a, b, '%s[%d]' % (path, i))
            if r:
                return r
        return None
    return '%s: unexpected expected-value %r' % (path, want)

def cases(kind):
    out = []
    for d, _, files in os.walk(os.path.join(suite, kind)):
        for f in files:
            if f.endswith('.toml'):
                out.append(os.path.join(d, f))
    return sorted(out)

def run(path):
    with open(path, 'rb') as f:
        data = f.read()
    try:
        p = subprocess.run([decoder], input=data, capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return -1, b'', b'timeout'
    return p.returncode, p.stdout, p.stderr

def report(ok, name, why=''):
    global fails
    if ok:
        print('PASS: ' + name)
    else:
        fails += 1
        print('FAIL: ' + name)
        if why:
            print('  ' + why[:600])

for path in cases('valid'):
    name = os.path.relpath(path, suite)[:-5]
    rc, out, err = run(path)
    if rc != 0:
        report(False, name, 'rejected (exit %d): %s' % (rc, err.decode(errors='replace').strip()))
        continue
    try:
        got = json.loads(out)
    except ValueError as e:
        report(False, name, 'decoder printed bad JSON: %s' % e)
        continue
    with open(path[:-5] + '.json') as f:
        want = json.load(f)
    why = same(want, got, '$')
    report(why is None, name, why or '')

for path in cases('invalid'):
    name = os.path.relpath(path, suite)[:-5]
    rc, out, err = run(path)
    msg = err.decode(errors='replace').strip()
    # A sanitizer report also exits 1: demand exactly the parser's
    # one-line "file:line:col: message".
    if rc == 1 and re.match(r'<stdin>:\d+:\d+: \S[^\n]*$', msg):
        report(True, name)
    elif rc == 0:
        report(False, name, 'accepted invalid TOML: ' + out.decode(errors='replace')[:300])
    else:
        report(False, name, 'exit %d (want 1 with a message): %s' % (rc, err.decode(errors='replace').strip()))

sys.exit(1 if fails else 0)
EOF
rc=$?
[ "$rc" = 0 ] || T_FAILS=$((T_FAILS + 1))
t_done
