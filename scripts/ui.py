"""`make ui`: `dagster dev` (webserver, daemon, code server) that stops within a few seconds.

`dagster dev` forwards a stop signal to its webserver and daemon and then waits for them; the
daemon can take more than a minute to finish its threads. This runs `dagster dev` in its own
process group, forwards Ctrl-C / TERM to the whole group, and kills what is still running after
STOP_GRACE_SECONDS, so the shell gets its prompt back promptly.
"""

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_SECONDS = 5.0


def main(argv: list[str]) -> int:
    proc = subprocess.Popen(argv, start_new_session=True)
    stopping: list[int] = []

    def stop(signum, _frame):
        stopping.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    while proc.poll() is None and not stopping:
        time.sleep(0.2)
    if proc.poll() is not None:
        return proc.returncode
    print(f"\nstopping dagster dev (pid {proc.pid}) and its processes...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = started + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anything left in the group?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    print(f"stopped in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: ui.py <command ...>  (make ui runs: ui.py dagster dev -w workspace.yaml ...)")
    sys.exit(main(sys.argv[1:]))
