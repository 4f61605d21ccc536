#!/usr/bin/env python3
"""Summarise callgrind profiles of a Meridian broker: instructions per send
and per pull, and the inclusive cost per call of the functions on the send
and pull paths. Counts calls from the profile itself, so profiles of runs
of different lengths compare.

    bench/callgrind_summary.py callgrind.out [more.out ...]
"""
import re
import subprocess
import sys

FUNCTIONS = [
    ("meridian_protocol::frame::json::decode", "header decode"),
    ("meridian_broker::processor::send::process", "send"),
    ("meridian_store::store::Inner::append", "send"),
    ("meridian_protocol::frame::encode_frame", "send"),
    ("meridian_broker::processor::pull::process", "pull"),
]


def calls(path, pattern):
    names, total, current = {}, 0, None
    for line in open(path, errors="replace"):
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "cfn":
                current = names.get(ident, "")
            continue
        m = re.match(r"calls=(\d+)", line)
        if m and current and re.search(pattern, current):
            total += int(m.group(1))
    return total


def annotate(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", path],
        capture_output=True, text=True, check=True,
    ).stdout
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))
    per_fn = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if m and ".rs:" in m.group(2):
            fn = m.group(2).split(".rs:", 1)[1].split(" [")[0].strip()
            # A function inlining code from other files is listed once per
            # file; its largest line is its whole inclusive cost.
            per_fn[fn] = max(per_fn.get(fn, 0), int(m.group(1).replace(",", "")))
    return total, per_fn


for path in sys.argv[1:]:
    sends = calls(path, r"processor::send::process$")
    pulls = calls(path, r"processor::pull::process$")
    decodes = calls(path, r"frame::json::decode$")
    total, per_fn = annotate(path, inclusive=True)
    print(f"{path}: {sends} sends, {pulls} pulls, {decodes} JSON headers decoded")
    print(f"  all broker instructions per send: {total / max(sends, 1):,.0f}")
    for fn, kind in FUNCTIONS:
        n = {"send": sends, "pull": pulls, "header decode": decodes}[kind]
        cost = max((v for k, v in per_fn.items() if k.endswith(fn)), default=0)
        print(f"  {fn}: {cost / max(n, 1):,.0f} per {kind}")
