#!/usr/bin/env python3
"""Reads an HdrHistogram interval log with the PyPI `hdrhistogram` package (module `hdrh`),
an implementation independent of the Rust crates, and prints what it decoded.

Usage: python3 read_hlog.py LOG

Output, one record a line, `key=value` fields separated by spaces:

    log start_time=<StartTime, s> base_time=<BaseTime, s>
    interval tag=<tag or -> start_ms=<ms since StartTime> duration_ms=<ms> count=<n>
        lowest=<v> highest=<v> digits=<d> min=<v> max=<v> p0=<v> p50=<v> ... p100=<v>

(each interval record is on one line). Exit status 3 with a message on stderr when the
package is missing.
"""
import sys

try:
    from hdrh.log import HistogramLogReader
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        "the PyPI package `hdrhistogram` (module `hdrh`) is missing: %s\n"
        "install it with `python3 -m pip install hdrhistogram`\n" % exc
    )
    sys.exit(3)

PERCENTILES = ["0", "50", "90", "99", "99.9", "100"]


def main(path):
    # The reference histogram is only used by add_next_interval_histogram, which is not called.
    reader = HistogramLogReader(path, None)
    lines = []
    try:
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            start_ms = h.get_start_time_stamp()
            end_ms = h.get_end_time_stamp()
            fields = [
                "interval",
                "tag=%s" % (h.get_tag() or "-"),
                # Timestamps come back absolute (BaseTime added): count from StartTime.
                "start_ms=%d" % round(start_ms - reader.get_start_time_sec() * 1000.0),
                "duration_ms=%d" % round(end_ms - start_ms),
                "count=%d" % h.get_total_count(),
                "lowest=%d" % h.lowest_trackable_value,
                "highest=%d" % h.highest_trackable_value,
                "digits=%d" % h.significant_figures,
                "min=%d" % h.get_min_value(),
                "max=%d" % h.get_max_value(),
            ]
            for p in PERCENTILES:
                fields.append("p%s=%d" % (p, h.get_value_at_percentile(float(p))))
            lines.append(" ".join(fields))
    finally:
        reader.close()
    print("log start_time=%.3f base_time=%.3f" % (reader.start_time_sec, reader.base_time_sec))
    for line in lines:
        print(line)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: read_hlog.py LOG\n")
        sys.exit(2)
    main(sys.argv[1])
