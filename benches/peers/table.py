"""Prints one table: ours (from benches/crypto.rs) against wechatpy and wechat-crypto.

Usage: table.py ours.json peer1.jsonl [peer2.jsonl ...]"""

import json
import sys


def us(ns):
    if ns is None:
        return "—"
    return f"{ns / 1000:.2f} µs" if ns < 10_000 else f"{ns / 1000:.1f} µs"


def size_label(n):
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


with open(sys.argv[1]) as f:
    ours = {row["size"]: row for row in json.load(f)["rows"]}

peers = {}  # impl -> {(size, op): ns}
for path in sys.argv[2:]:
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                peers.setdefault(r["impl"], {})[(r["size"], r["op"])] = r["ns"]
names = list(peers)
short = [n.split(" (")[0].rsplit(" ", 1)[0] for n in names]

ops = [("encrypt_and_sign", "encrypt + sign"), ("verify_and_decrypt", "verify + decrypt")]
header = ["message"]
for _, title in ops:
    header += [f"{title}: ours"] + short + ["faster peer ÷ ours"]
print("| " + " | ".join(header) + " |")
print("|" + "---:|" * len(header))
for size in sorted(ours):
    cells = [size_label(size)]
    for op, _ in ops:
        mine = ours[size].get(f"{op}_ns")
        theirs = [peers[n].get((size, op)) for n in names]
        known = [t for t in theirs if t is not None]
        best = min(known) if known else None
        cells.append(us(mine))
        cells += [us(t) for t in theirs]
        if best and mine:
            ratio = best / mine
            cells.append(f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.2f}×")
        else:
            cells.append("—")
    print("| " + " | ".join(cells) + " |")
print()
for n in names:
    print(f"* {n}")
