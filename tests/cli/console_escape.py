#!/usr/bin/env python3
"""console_escape.py - run a command on a pseudo-terminal, wait until its
output shows WAIT_FOR, type the console escape (Ctrl-A x), and report.

usage: console_escape.py WAIT_FOR TIMEOUT CMD [ARG...]

Prints the terminal transcript (carriage returns dropped), then
"exit-status: N" (or "killed-by-signal: N") and "terminal: cooked" or
"terminal: raw" (whether the command put the terminal back the way it
found it).  With CONSOLE_ESCAPE_LS=DIR in the environment, it also prints
"during-run: FILES" (what DIR holds, recursively) just before the escape.  Exits 0 when the command ended after the escape, 3 when
WAIT_FOR never came, 4 when the command did not end after the escape
(it is then killed).  The time bounds only turn hangs into failures.
"""
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time


def read_until(fd, buf, want, deadline):
    while want not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        buf += data
    return buf


def main():
    want = sys.argv[1].encode()
    timeout = float(sys.argv[2])
    cmd = sys.argv[3:]
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True)
    buf = read_until(master, b"", want, time.monotonic() + timeout)
    if want not in buf:
        proc.kill()
        proc.wait()
        sys.stdout.write(buf.decode(errors="replace").replace("\r", ""))
        print("\nconsole_escape: '%s' never appeared" % want.decode())
        return 3
    during = os.environ.get("CONSOLE_ESCAPE_LS")
    if during:
        files = []
        for top, _, names in os.walk(during):
            files += [os.path.relpath(os.path.join(top, n), during)
                      for n in names]
        during = "during-run: " + " ".join(sorted(files))
    os.write(master, b"\x01x")
    deadline = time.monotonic() + timeout
    rc = None
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            break
        buf = read_until(master, buf, b"\0never\0", time.monotonic() + 0.2)
    if rc is None:
        proc.kill()
        proc.wait()
        sys.stdout.write(buf.decode(errors="replace").replace("\r", ""))
        print("\nconsole_escape: still running after the escape; killed")
        return 4
    # What is left in the terminal's buffer after the exit.
    buf = read_until(master, buf, b"\0never\0", time.monotonic() + 0.3)
    after = termios.tcgetattr(slave)
    sys.stdout.write(buf.decode(errors="replace").replace("\r", ""))
    print()
    if during:
        print(during)
    if rc < 0:
        print("killed-by-signal: %d" % -rc)
    else:
        print("exit-status: %d" % rc)
    # lflag (index 3) holds ICANON and ECHO.
    cooked = (after[3] & (termios.ICANON | termios.ECHO)) == \
        (before[3] & (termios.ICANON | termios.ECHO))
    print("terminal: %s" % ("cooked" if cooked else "raw"))
    os.close(master)
    os.close(slave)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
