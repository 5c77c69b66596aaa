#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one test with the AddressSanitizer/UBSan reports of every process it starts (the sluice servers of the
# server tests included) written to a folder of its own, and fails the test when any report was written:
# a report from a server that a test killed, or one at exit, fails the run too. The reports are printed.
# usage: sanitize.py COMMAND [ARG...]   (the 'sanitizers' test setup in tests/meson.build)
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile

REPORT_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'ERROR: UndefinedBehaviorSanitizer')


def main():
    if len(sys.argv) < 2:
        sys.stderr.write('usage: sanitize.py COMMAND [ARG...]\n')
        return 2
    # meson stops a test that runs out of time with SIGTERM: the folder goes all the same.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    reports = tempfile.mkdtemp(prefix='sluice-sanitizer-')
    env = dict(os.environ)
    for name, prefix in (('ASAN_OPTIONS', 'asan'), ('UBSAN_OPTIONS', 'ubsan')):
        options = env.get(name, '')
        env[name] = (options + ':' if options else '') + 'log_path=' + os.path.join(reports, prefix)
    try:
        status = subprocess.call(sys.argv[1:], env=env)
        if status < 0:  # killed by a signal (abort_on_error: SIGABRT)
            status = 128 - status
        found = False
        for path in sorted(glob.glob(os.path.join(reports, '*'))):
            with open(path, errors='replace') as f:
                text = f.read()
            is_report = any(m in text for m in REPORT_MARKERS)
            found = found or is_report
            sys.stderr.write('\n--- %s (%s) ---\n%s\n--- end ---\n'
                             % ('sanitizer report' if is_report else 'sanitizer output', os.path.basename(path), text))
        if found:
            sys.stderr.write('sanitize.py: a sanitizer reported an error (above): the test fails\n')
            return status if status not in (0, 77) else 1
        return status
    finally:
        shutil.rmtree(reports, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
