#!/usr/bin/env python3
"""Plots a soak CSV: server RSS, open descriptors, CPU and traffic over time.

Usage: soak/.venv/bin/python soak/plot.py [soak/out/soak.csv [soak/out/soak.png]]
"""

from __future__ import annotations

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHASE_COLOURS = {"ramp": "#fff3cd", "close": "#f8d7da", "settle": "#e2e3e5", "final": "#e2e3e5"}


def load(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k != "phase":
                r[k] = float(v)
    return rows


def plot(csv_path: str, png_path: str) -> None:
    rows = load(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no samples")
    t = [r["t_s"] for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ax_rss, ax_fd, ax_cpu, ax_ev = axes

    # shade the phases (a row's phase is that of the interval it ends)
    for ax in axes:
        for i in range(1, len(rows)):
            colour = PHASE_COLOURS.get(rows[i]["phase"])
            if colour:
                ax.axvspan(t[i - 1], t[i], color=colour, lw=0)
        ax.grid(True, alpha=0.3)

    ax_rss.plot(t, [r["rss_mib"] for r in rows], marker=".", color="tab:blue")
    ax_rss.set_ylabel("server RSS (MiB)")
    ax_rss.set_ylim(bottom=0)

    ax_fd.plot(t, [r["fds"] for r in rows], marker=".", color="tab:green", label="server open fds")
    ax_fd.plot(t, [r["conns_open"] for r in rows], ls="--", color="tab:gray", label="client connections open")
    ax_fd.set_ylabel("descriptors")
    ax_fd.set_ylim(bottom=0)
    ax_fd.legend(loc="upper right", fontsize=8)

    ax_cpu.plot(t[1:], [r["cpu_pct"] for r in rows[1:]], marker=".", color="tab:red", label="server")
    ax_cpu.plot(t[1:], [r["client_cpu_pct"] for r in rows[1:]], ls="--", color="tab:orange", label="soak client")
    ax_cpu.set_ylabel("CPU (% of one core)")
    ax_cpu.set_ylim(bottom=0)
    ax_cpu.legend(loc="upper right", fontsize=8)

    def per_s(key: str) -> list[float]:
        return [rows[i][key] / (t[i] - t[i - 1]) if t[i] > t[i - 1] else 0.0 for i in range(1, len(rows))]

    ax_ev.plot(t[1:], per_s("rest_received"), color="tab:purple", label="REST events delivered")
    ax_ev.plot(t[1:], per_s("member_events"), color="tab:brown", label="presence member events")
    ax_ev.plot(t[1:], per_s("client_received"), color="tab:cyan", label="client events delivered")
    ax_ev.plot(t[1:], per_s("connects"), color="tab:gray", ls=":", label="connects")
    ax_ev.plot(t[1:], per_s("subscribes"), color="tab:olive", ls=":", label="subscribes")
    ax_ev.set_ylabel("per second (log)")
    ax_ev.set_yscale("log")
    ax_ev.set_xlabel("time since start (s)   [yellow: ramp, red: close, grey: settle]")
    ax_ev.set_ylim(bottom=0.5)
    ax_ev.legend(loc="upper right", fontsize=8)

    peak = max(r["rss_mib"] for r in rows)
    fig.suptitle(
        f"poxide soak: up to {int(max(r['conns_open'] for r in rows))} connections, RSS {rows[0]['rss_mib']:.1f} -> "
        f"peak {peak:.1f} -> end {rows[-1]['rss_mib']:.1f} MiB, fds {int(rows[0]['fds'])} -> end {int(rows[-1]['fds'])}"
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "out", "soak.csv")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.splitext(src)[0] + ".png"
    plot(src, dst)
    print(dst)
