"""`make demo`: the whole loop on the bundled sample, offline, into the persistent local instance.

The walk-forward of scripts/walkforward.py with a demo's budget: the whole sample backfilled, a
baseline champion serving, a first LSTM candidate judged by the gate, 30 replayed sessions with the
sensor and the retrainings it requests, and a clearly labelled drill: after 4 sessions a
deliberately biased champion is installed, the detector catches it and the loop replaces it.
Options are walkforward.py's (e.g. `make demo DEMO_ARGS="--sessions 60 --drill-after 0"`).
"""

from walkforward import main

if __name__ == "__main__":
    main(sessions=30, trials=4, epochs=6, drill_after=4)
