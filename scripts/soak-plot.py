#!/usr/bin/env python3
"""Plots a soak's samples (benches/benches/soak.rs writes them): the host's
RSS, open descriptors and store size against calls done, one panel each.

Usage: soak-plot.py SAMPLES.csv OUT.png [TITLE]"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no samples")
    calls = [int(r["calls"]) / 1000 for r in rows]
    panels = [
        ("RSS (MB)", [int(r["rss_kb"]) / 1024 for r in rows]),
        ("open descriptors", [int(r["fds"]) for r in rows]),
        ("state.redb (KB)", [int(r["store_kb"]) for r in rows]),
    ]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(7, 6), dpi=100)
    for ax, (label, values) in zip(axes, panels):
        ax.plot(calls, values, linewidth=1.2)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0, top=max(values) * 1.25 or 1)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("calls done (thousands)")
    fig.suptitle(sys.argv[3] if len(sys.argv) > 3 else "wasmvol soak")
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
