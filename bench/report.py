#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""report.py - turn bench/run.sh's raw.csv into summary.csv, summary.md and
one SVG bar chart per scenario. Standard library only.

    python3 bench/report.py bench/results/quick

Every figure is the median over runs, with min..max beside it, and its ratio
to the raw epoll server's median (the practical limit: above 1 means "more
than raw epoll", which is better for throughput and worse for time, memory
and instructions; each row says which way is better). The stream scenario
also has a "ceiling" column (loadgen against its own blocking echo thread)
and a row with each server's share of it. The http scenarios (the HTTP
example under wrk) are measured against nginx instead of raw epoll, the
resp scenarios (the Redis-protocol example under redis-benchmark) against
redis-server.
"""
import csv
import html
import os
import statistics
import sys
from collections import defaultdict

SERVER_ORDER = ["proact-epoll", "proact-uring", "epoll", "uring", "libuv", "libuv-pool",
                "libevent", "nginx", "redis-server"]
BASELINE = "epoll"
# Scenarios whose ratios are to another server than raw epoll, by name prefix.
BASELINES = {"http": "nginx", "resp": "redis-server"}
CEILING = "ceiling"  # not a server: always the last column

# Rows that give each server's median as a share of the ceiling's, per
# scenario and metric; the label of the row.
CEILING_ROWS = {("stream-64k", "mbps"): "stream-64k: share of the ceiling"}

# (scenario, metric, label, unit, scale, better) for the table and charts.
ROWS = [
    ("echo-64k", "mbps", "echo-64k throughput", "MB/s", 1, "higher"),
    ("stream-64k", "mbps", "stream-64k throughput", "MB/s", 1, "higher"),
    ("conn-8192", "secs", "conn-8k wall time", "ms", 1e3, "lower"),
    ("conn-fit", "slope", "conn 1k..16k slope", "us/conn", 1, "lower"),
    ("conn-fit", "intercept", "conn 1k..16k intercept", "ms", 1, "lower"),
    ("pingpong-1000", "rps", "ping-pong 1k conns", "req/s", 1, "higher"),
    ("pingpong-1000", "p50_us", "ping-pong 1k p50", "us", 1, "lower"),
    ("pingpong-1000", "p99_us", "ping-pong 1k p99", "us", 1, "lower"),
    ("pingpong-1000", "p999_us", "ping-pong 1k p999", "us", 1, "lower"),
    ("pingpong-10000", "rps", "ping-pong 10k conns", "req/s", 1, "higher"),
    ("pingpong-10000", "p50_us", "ping-pong 10k p50", "us", 1, "lower"),
    ("pingpong-10000", "p99_us", "ping-pong 10k p99", "us", 1, "lower"),
    ("pingpong-10000", "p999_us", "ping-pong 10k p999", "us", 1, "lower"),
    ("idle-1000", "rss_bytes_per_conn", "idle 1k: server RSS", "B/conn", 1, "lower"),
    ("idle-10000", "rss_bytes_per_conn", "idle 10k: server RSS", "B/conn", 1, "lower"),
    ("idle-19000", "rss_bytes_per_conn", "idle 19k: server RSS", "B/conn", 1, "lower"),
    ("idle-10000", "kernel_Slab_bytes_per_conn", "idle 10k: kernel slab", "B/conn", 1, "lower"),
    ("idle-19000", "kernel_Slab_bytes_per_conn", "idle 19k: kernel slab", "B/conn", 1, "lower"),
    ("push-10k", "secs", "push to 10k conns", "ms", 1e3, "lower"),
    ("callgrind", "instructions_per_roundtrip", "instructions per round trip", "instr", 1,
     "lower"),
    ("http-100", "rps", "http /, 100 conns", "req/s", 1, "higher"),
    ("http-100", "p50_us", "http /, 100 conns: p50", "us", 1, "lower"),
    ("http-100", "p99_us", "http /, 100 conns: p99", "us", 1, "lower"),
    ("http-100", "cpu_us_per_req", "http /, 100 conns: server CPU", "us/req", 1, "lower"),
    ("http-1000", "rps", "http /, 1k conns", "req/s", 1, "higher"),
    ("http-1000", "p50_us", "http /, 1k conns: p50", "us", 1, "lower"),
    ("http-1000", "p99_us", "http /, 1k conns: p99", "us", 1, "lower"),
    ("http-1000", "cpu_us_per_req", "http /, 1k conns: server CPU", "us/req", 1, "lower"),
    ("http-file-100", "rps", "http 4 KiB file, 100 conns", "req/s", 1, "higher"),
    ("http-file-100", "p99_us", "http 4 KiB file, 100 conns: p99", "us", 1, "lower"),
    ("http-file-100", "cpu_us_per_req", "http 4 KiB file, 100 conns: server CPU", "us/req", 1,
     "lower"),
]

# resp: per pipeline depth, each redis-benchmark test's ops/s and the
# server's CPU time per request.
RESP_TESTS = [("ping_inline", "PING_INLINE"), ("ping_mbulk", "PING_MBULK"), ("set", "SET"),
              ("get", "GET")]
ROWS += [(f"resp-p{d}", f"{t}_rps", f"resp {name} -P {d}", "ops/s", 1, "higher")
         for d in (1, 16) for t, name in RESP_TESTS]
ROWS += [(f"resp-p{d}", f"{t}_cpu_us", f"resp {name} -P {d}: server CPU", "us/op", 1, "lower")
         for d in (1, 16) for t, name in RESP_TESTS]

# Charts of several rows side by side, a bar per row and server:
# (file name, title, unit, better, [(scenario, metric, label)]).
GROUP_CHARTS = [
    (f"resp-p{d}{suffix}", f"resp -P {d}: {what}", unit, better,
     [(f"resp-p{d}", f"{t}_{metric}", name) for t, name in RESP_TESTS])
    for d in (1, 16)
    for suffix, what, metric, unit, better in (
        ("", "ops/s per command", "rps", "ops/s", "higher"),
        ("-cpu", "server CPU per request", "cpu_us", "us/op", "lower"))
]

# One chart per scenario: its headline row.
CHARTS = [
    ("echo-64k", "mbps"),
    ("stream-64k", "mbps"),
    ("conn-8192", "secs"),
    ("conn-fit", "slope"),
    ("pingpong-1000", "rps"),
    ("pingpong-10000", "rps"),
    ("idle-1000", "rss_bytes_per_conn"),
    ("idle-10000", "rss_bytes_per_conn"),
    ("idle-19000", "rss_bytes_per_conn"),
    ("push-10k", "secs"),
    ("callgrind", "instructions_per_roundtrip"),
    ("http-100", "rps"),
    ("http-1000", "rps"),
    ("http-file-100", "rps"),
    ("http-100", "cpu_us_per_req"),
]


def baseline(sc):
    """The server a scenario's ratios are to."""
    return next((b for p, b in BASELINES.items() if sc.startswith(p)), BASELINE)


def load(path):
    data = defaultdict(list)  # (scenario, metric, server) -> [values]
    by_run = defaultdict(dict)  # (scenario, metric, server) -> {run: value}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["scenario"], row["metric"], row["server"])
            data[key].append(float(row["value"]))
            by_run[key][row["run"]] = float(row["value"])
    return data, by_run


def ceiling_share(by_run, sc, m, s):
    """Median over runs of server / ceiling, each run against the ceiling
    measured in the same round (runs alternate, so the pair shares the
    machine's state of the moment); None without a pair."""
    own, ceil = by_run.get((sc, m, s), {}), by_run.get((sc, m, CEILING), {})
    pairs = [own[r] / ceil[r] for r in own if r in ceil and ceil[r] > 0]
    return statistics.median(pairs) if pairs else None


def fit_conn(data, servers):
    """Least squares secs = a + b * n over the medians of each conn-N."""
    sizes = sorted({int(sc.split("-")[1]) for (sc, m, s) in data if sc.startswith("conn-")
                    and sc.split("-")[1].isdigit()})
    for s in servers:
        pts = [(n, statistics.median(data[(f"conn-{n}", "secs", s)])) for n in sizes
               if data.get((f"conn-{n}", "secs", s))]
        if len(pts) < 2:
            continue
        mx = sum(n for n, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxx = sum((n - mx) ** 2 for n, _ in pts)
        b = sum((n - mx) * (y - my) for n, y in pts) / sxx
        a = my - b * mx
        data[("conn-fit", "slope", s)] = [b * 1e6]  # us per connection
        data[("conn-fit", "intercept", s)] = [a * 1e3]  # ms
    return sizes


def fmt(v):
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def svg_chart(path, title, unit, better, rows):
    """rows: [(server, median, lo, hi)] -> a horizontal bar chart; a label
    naming a proact server gets proact's colour."""
    w, right, bar, gap, top = 640, 150, 22, 8, 46
    left = max([110] + [7 * len(r[0]) + 16 for r in rows])
    w += left - 110
    h = top + len(rows) * (bar + gap) + 30
    vmax = max(max(r[3], r[1]) for r in rows) or 1
    scale = (w - left - right) / vmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
           f'<text x="10" y="38" fill="#555">{html.escape(unit)}, {better} is better; '
           f'median of runs, whisker min..max</text>']
    for i, (srv, med, lo, hi) in enumerate(rows):
        y = top + i * (bar + gap)
        color = ("#d9822b" if "proact" in srv else
                 "#999999" if srv == CEILING else "#4a7ab5")
        out.append(f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">'
                   f'{html.escape(srv)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{max(med * scale, 1):.1f}" '
                   f'height="{bar}" fill="{color}"/>')
        if hi > lo:
            cy = y + bar / 2
            out.append(f'<line x1="{left + lo * scale:.1f}" y1="{cy}" x2="{left + hi * scale:.1f}"'
                       f' y2="{cy}" stroke="black"/>')
            for x in (lo, hi):
                out.append(f'<line x1="{left + x * scale:.1f}" y1="{cy - 5}" '
                           f'x2="{left + x * scale:.1f}" y2="{cy + 5}" stroke="black"/>')
        out.append(f'<text x="{left + max(med, hi) * scale + 6:.1f}" y="{y + bar * 0.7}">'
                   f'{fmt(med)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    outdir = sys.argv[1]
    data, by_run = load(os.path.join(outdir, "raw.csv"))
    present = {s for (_, _, s) in data}
    servers = [s for s in SERVER_ORDER if s in present] + sorted(
        present - set(SERVER_ORDER) - {CEILING}) + ([CEILING] if CEILING in present else [])
    fit_conn(data, servers)

    def stats(sc, m, s, scale=1):
        v = data.get((sc, m, s))
        if not v:
            return None
        return (statistics.median(v) * scale, min(v) * scale, max(v) * scale, len(v))

    # summary.csv: every scenario and metric.
    keys = sorted({(sc, m) for (sc, m, _) in data})
    with open(os.path.join(outdir, "summary.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["scenario", "metric", "server", "median", "min", "max", "runs",
                     "baseline", "ratio_to_baseline", "ratio_to_ceiling"])
        for sc, m in keys:
            base = stats(sc, m, baseline(sc))
            for s in servers:
                st = stats(sc, m, s)
                if not st:
                    continue
                ratio = st[0] / base[0] if base and base[0] else ""
                share = ceiling_share(by_run, sc, m, s) if (sc, m) in CEILING_ROWS else None
                wr.writerow([sc, m, s, f"{st[0]:.6g}", f"{st[1]:.6g}", f"{st[2]:.6g}", st[3],
                             baseline(sc), f"{ratio:.3f}" if ratio != "" else "",
                             f"{share:.3f}" if share is not None else ""])

    # summary.md: the headline rows, one column per server.
    lines = []
    machine = os.path.join(outdir, "machine.txt")
    if os.path.exists(machine):
        with open(machine) as f:
            lines += ["```", f.read().strip(), "```", ""]
    lines.append("Median of runs (min..max); below it, the ratio to raw epoll (http rows: "
                 "to nginx; resp rows: to redis-server).")
    if CEILING in servers:
        lines.append("The ceiling column is no server: loadgen's stream against its own "
                     "blocking echo thread (see bench/README.md); the share row is the median "
                     "of per-run ratios to it.")
    lines.append("")
    lines.append("| scenario | unit | better | " + " | ".join(servers) + " |")
    lines.append("|---|---|---|" + "---|" * len(servers))
    for sc, m, label, unit, scale, better in ROWS:
        base = stats(sc, m, baseline(sc), scale)
        cells = []
        for s in servers:
            st = stats(sc, m, s, scale)
            if not st:
                cells.append("")
                continue
            cell = fmt(st[0])
            if st[3] > 1:
                cell += f" ({fmt(st[1])}..{fmt(st[2])})"
            # An intercept is a few ms of noise around 0: a ratio would mislead.
            if base and base[0] > 0 and st[0] > 0 and m != "intercept":
                cell += f"<br>x{st[0] / base[0]:.2f}"
            cells.append(cell)
        if any(cells):
            lines.append(f"| {label} | {unit} | {better} | " + " | ".join(cells) + " |")
        if (sc, m) in CEILING_ROWS and stats(sc, m, CEILING):
            shares = [ceiling_share(by_run, sc, m, s) if s != CEILING else None
                      for s in servers]
            lines.append(f"| {CEILING_ROWS[(sc, m)]} | x ceiling | {better} | " +
                         " | ".join(f"x{v:.2f}" if v is not None else "" for v in shares) +
                         " |")
    cpu_rows = []
    for sc in ("echo-64k", "stream-64k", "conn-8192", "pingpong-1000", "pingpong-10000",
               "push-10k"):
        cells = []
        for s in servers:
            lg, sv = stats(sc, "cpu", s), stats(sc, "server_cpu", s)
            cells.append(f"{lg[0]:.2f} / {sv[0]:.2f}" if lg and sv else "")
        if any(cells):
            cpu_rows.append(f"| {sc}: cores used, loadgen / server | | | " +
                            " | ".join(cells) + " |")
    for sc in ("http-100", "http-1000", "http-file-100"):
        cells = [f"{st[0]:.2f}" if (st := stats(sc, "server_cpu", s)) else "" for s in servers]
        if any(cells):
            cpu_rows.append(f"| {sc}: server cores used (wrk on the other) | | | " +
                            " | ".join(cells) + " |")
    for d in (1, 16):
        cells = []
        for s in servers:
            used = [(c[0], v[0]) for t, _ in RESP_TESTS
                    if (c := stats(f"resp-p{d}", f"{t}_client_cpu", s))
                    and (v := stats(f"resp-p{d}", f"{t}_server_cpu", s))]
            cells.append(f"{statistics.mean(c for c, _ in used):.2f} / "
                         f"{statistics.mean(v for _, v in used):.2f}" if used else "")
        if any(cells):
            cpu_rows.append(f"| resp -P {d}: cores used, redis-benchmark / server (mean of "
                            "the tests) | | | " + " | ".join(cells) + " |")
    lines += cpu_rows
    lines.append("")
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(lines))

    # One chart per scenario (a second one of a scenario is named by metric too).
    charted = set()
    for sc, m in CHARTS:
        row = next(r for r in ROWS if r[0] == sc and r[1] == m)
        _, _, label, unit, scale, better = row
        bars = []
        for s in servers:
            st = stats(sc, m, s, scale)
            if st:
                bars.append((s, st[0], st[1], st[2]))
        if bars:
            name = f"{sc}-{m}" if sc in charted else sc
            charted.add(sc)
            svg_chart(os.path.join(outdir, f"{name}.svg"), label, unit, better, bars)
    for name, title, unit, better, rows in GROUP_CHARTS:
        bars = [(f"{label} {s}",) + st[:3] for sc, m, label in rows for s in servers
                if (st := stats(sc, m, s))]
        if bars:
            svg_chart(os.path.join(outdir, f"{name}.svg"), title, unit, better, bars)
    print(open(os.path.join(outdir, "summary.md")).read())


if __name__ == "__main__":
    main()
