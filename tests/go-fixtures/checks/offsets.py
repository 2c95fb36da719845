#!/usr/bin/env python3
"""Offsets of the runtime.g and runtime.m fields the casgstatus mapping reads, from a
Go binary's DWARF (`readelf --debug-dump=info`), as JSON on stdout.

    offsets.py BINARY
"""
import json
import re
import subprocess
import sys

WANTED = {
    "runtime.g": ["goid", "m", "atomicstatus", "waitreason", "parentGoid", "startpc", "gopc", "sched", "stack"],
    "runtime.m": ["curg", "procid", "g0", "p"],
}


def offsets(binary):
    text = subprocess.run(
        ["readelf", "--debug-dump=info", "--wide", binary],
        check=True, capture_output=True, text=True,
    ).stdout
    found = {struct: {} for struct in WANTED}
    current = None  # the struct whose members are being read
    member = None
    depth_of_struct = None
    for line in text.splitlines():
        m = re.match(r"\s*<(\d+)><[0-9a-f]+>: Abbrev Number: \d+ \((DW_TAG_\w+)\)", line)
        if m:
            depth, tag = int(m.group(1)), m.group(2)
            if current and depth <= depth_of_struct:
                current = None
            pending_tag, pending_depth = tag, depth
            member = None
            continue
        m = re.match(r"\s*<[0-9a-f]+>\s+DW_AT_name\s*:\s*(?:\([^)]*\)(?::)? )?(.*)$", line)
        if m:
            name = m.group(1).strip()
            if pending_tag == "DW_TAG_structure_type" and name in WANTED and not found[name]:
                current, depth_of_struct = name, pending_depth
            elif current and pending_tag == "DW_TAG_member" and pending_depth == depth_of_struct + 1:
                member = name
            continue
        m = re.match(r"\s*<[0-9a-f]+>\s+DW_AT_data_member_location:\s*(?:\(\w+\) )?(\d+)", line)
        if m and current and member in WANTED[current]:
            found[current][member] = int(m.group(1))
    return found


if __name__ == "__main__":
    print(json.dumps(offsets(sys.argv[1]), sort_keys=True))
