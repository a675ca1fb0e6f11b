#!/usr/bin/env python3
"""Evaluates the Grafana dashboard's own queries against a real Prometheus and
draws its panels: Grafana is not installable on the build machine, so this is
the dashboard rendered faithfully (layout from `gridPos`, titles, units,
legends, per-query axis overrides), not a Grafana screenshot.

  render_dashboard.py render --prometheus URL --start UNIX --end UNIX
                             [--scrape-interval 2] [--out docs/dashboard.png]
  render_dashboard.py check  --prometheus URL [--scrape-interval 1]

`render` runs every target's `expr` through `/api/v1/query_range` over
[start, end] and writes a PNG (matplotlib). `check` runs every `expr` once
through `/api/v1/query` and prints one JSON object per query (`panel`,
`ref`, `expr`, `series`: how many series came back, `finite`: how many have a
finite value). Both exit non-zero when Prometheus rejects any query (a PromQL
parse or execution error), name it, and report on stderr the queries that
returned no data.

Grafana's variables are substituted as Grafana would with the Prometheus
data source's scrape interval set to `--scrape-interval`: `$__interval` = the
step (at least the scrape interval), `$__rate_interval` = max($__interval +
scrape interval, 4 x scrape interval), `$__range` = the window; dashboard
variables of type custom/constant/query/textbox take their current value.
A `$` left over after substitution is an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy/grafana/secret-manager.json"

# Grafana's classic palette, in its order.
PALETTE = [
    "#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2",
    "#B877D9", "#705DA0", "#37872D", "#FADE2A", "#447EBC", "#C15C17",
    "#890F02", "#0A437C", "#6D1F62", "#584477", "#B7DBAB", "#F4D598",
]
BG, PANEL, BORDER, TEXT, MUTED, GRID = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e", "#2c3235"


class QueryRejected(Exception):
    pass


def duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def variables(dashboard: dict, step: float, scrape: float, window: float) -> dict[str, str]:
    rate = max(step + scrape, 4 * scrape)
    found = {
        "__interval": duration(step),
        "__interval_ms": str(int(step * 1000)),
        "__rate_interval": duration(rate),
        "__range": duration(window),
        "__range_s": str(int(window)),
        "__range_ms": str(int(window * 1000)),
    }
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") in ("custom", "constant", "query", "textbox", "interval"):
            current = var.get("current", {}).get("value", var.get("query", ""))
            if isinstance(current, list):
                current = "|".join(current)
            found[var["name"]] = str(current)
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise QueryRejected(f"unknown variable ${name} in {expr!r}")
        return values[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)
    if "$" in out:
        raise QueryRejected(f"unsubstituted variable in {out!r}")
    return out


def api(base: str, path: str, params: dict) -> list:
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            body = json.load(res)
    except urllib.error.HTTPError as e:
        # 400 = bad_data (a PromQL parse error), 422 = execution error.
        try:
            detail = json.load(e)
            detail = f"{detail.get('errorType')}: {detail.get('error')}"
        except ValueError:
            detail = e.reason
        raise QueryRejected(f"HTTP {e.code} {detail}") from None
    if body.get("status") != "success":
        raise QueryRejected(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def targets(dashboard: dict):
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            if t.get("expr") and not t.get("hide"):
                yield panel, t


def legend(fmt: str | None, labels: dict) -> str:
    if not fmt:
        inner = ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
        return f"{labels.get('__name__', '')}{{{inner}}}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def check(args, dashboard: dict) -> int:
    values = variables(dashboard, args.scrape_interval, args.scrape_interval, 3600)
    rejected, empty = [], []
    for panel, t in targets(dashboard):
        expr = t["expr"]
        try:
            result = api(args.prometheus, "/api/v1/query", {"query": substitute(expr, values)})
        except QueryRejected as e:
            rejected.append(f"{panel['title']} [{t.get('refId')}] {expr}: {e}")
            continue
        finite = sum(1 for r in result if math.isfinite(float(r["value"][1])))
        if not result:
            empty.append(f"{panel['title']} [{t.get('refId')}] {expr}")
        print(json.dumps({"panel": panel["title"], "ref": t.get("refId"), "expr": expr,
                          "series": len(result), "finite": finite}))
    return report(rejected, empty)


def report(rejected: list[str], empty: list[str]) -> int:
    for e in empty:
        print(f"no data: {e}", file=sys.stderr)
    for r in rejected:
        print(f"REJECTED by Prometheus: {r}", file=sys.stderr)
    return 1 if rejected else 0


# --- drawing ---------------------------------------------------------------

def si(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def formatter(unit: str | None, top: float):
    if unit == "s":
        if top < 1e-3:
            return lambda v, _: f"{v * 1e6:.3g} µs"
        if top < 1:
            return lambda v, _: f"{v * 1e3:.3g} ms"
        return lambda v, _: f"{v:.3g} s"
    suffix = {"reqps": " req/s", "ops": " ops/s", "percent": "%"}.get(unit or "", "")
    return lambda v, _: si(v) + suffix


def render(args, dashboard: dict) -> int:
    try:
        import matplotlib
    except ImportError:
        print("render_dashboard.py: matplotlib is missing (python3 -m pip install matplotlib)", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    window = args.end - args.start
    step = max(args.scrape_interval, window / 600)
    values = variables(dashboard, step, args.scrape_interval, window)

    rejected, empty, results = [], [], {}
    for panel, t in targets(dashboard):
        key = (panel["id"], t.get("refId"))
        try:
            results[key] = api(args.prometheus, "/api/v1/query_range", {
                "query": substitute(t["expr"], values),
                "start": args.start, "end": args.end, "step": step,
            })
        except QueryRejected as e:
            rejected.append(f"{panel['title']} [{t.get('refId')}] {t['expr']}: {e}")
            continue
        if not any(math.isfinite(float(v)) for r in results[key] for _, v in r["values"]):
            empty.append(f"{panel['title']} [{t.get('refId')}] {t['expr']}")
    if rejected:
        return report(rejected, empty)

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width_px, unit_px, gap_px, header_px = 1600, 30, 8, 56
    col_px = (width_px - gap_px) / 24
    height_px = header_px + rows * unit_px + gap_px
    dpi = 100
    fig = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor=BG)
    px = lambda x, y, w, h: (x / width_px, 1 - (y + h) / height_px, w / width_px, h / height_px)  # noqa: E731

    fmt_time = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    fig.text(gap_px / width_px, 1 - 22 / height_px, dashboard.get("title", ""), color=TEXT,
             fontsize=15, weight="bold", va="center")
    fig.text(gap_px / width_px, 1 - 44 / height_px,
             f"{fmt_time(args.start)} to {fmt_time(args.end)} UTC  ·  the dashboard's queries "
             f"evaluated by Prometheus, drawn by scripts/render_dashboard.py (not a Grafana screenshot)",
             color=MUTED, fontsize=9, va="center")

    for panel in panels:
        g = panel["gridPos"]
        x0 = gap_px + g["x"] * col_px
        y0 = header_px + g["y"] * unit_px
        w, h = g["w"] * col_px - gap_px, g["h"] * unit_px - gap_px
        frame = fig.add_axes(px(x0, y0, w, h))
        frame.set_axis_off()
        frame.add_patch(FancyBboxPatch((0, 0), 1, 1, boxstyle="round,pad=0,rounding_size=0.01",
                                       transform=frame.transAxes, facecolor=PANEL,
                                       edgecolor=BORDER, linewidth=0.8))
        frame.text(10 / w, 1 - 14 / h, panel.get("title", ""), color=TEXT, fontsize=10,
                   weight="bold", va="center", transform=frame.transAxes)

        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit")
        right_refs, right_unit = set(), None
        for o in panel.get("fieldConfig", {}).get("overrides", []):
            m = o.get("matcher", {})
            if m.get("id") != "byFrameRefID":
                continue
            props = {p["id"]: p.get("value") for p in o.get("properties", [])}
            if props.get("custom.axisPlacement") == "right":
                right_refs.add(m.get("options"))
                right_unit = props.get("unit", right_unit)

        series = []  # (label, ref, xs, ys)
        for t in panel.get("targets", []):
            for r in results.get((panel["id"], t.get("refId")), []):
                xs = [dt.datetime.fromtimestamp(float(ts), dt.timezone.utc) for ts, _ in r["values"]]
                ys = [float(v) for _, v in r["values"]]
                ys = [v if math.isfinite(v) else math.nan for v in ys]
                series.append((legend(t.get("legendFormat"), r["metric"]), t.get("refId"), xs, ys))
        series.sort(key=lambda s: (s[1] or "", s[0]))

        inner_x, inner_w = x0 + 58, w - 58 - (58 if right_refs else 14)
        if panel.get("type") == "stat":
            draw_stat(fig, px, panel, series, unit, x0, y0, w, h)
            continue
        ncol = max(1, int(inner_w // 250))
        legend_rows = math.ceil(len(series) / ncol) if series else 0
        legend_px = 8 + 13 * legend_rows
        inner_y, inner_h = y0 + 30, h - 30 - 22 - legend_px
        ax = fig.add_axes(px(inner_x, inner_y, inner_w, inner_h), facecolor=PANEL)
        axes = {False: ax}
        if right_refs:
            axes[True] = ax.twinx()
        for a in axes.values():
            for side in ("top", "right", "left", "bottom"):
                a.spines[side].set_visible(False)
            a.tick_params(colors=MUTED, labelsize=7.5, length=0)
            a.grid(True, color=GRID, linewidth=0.6)
            a.set_axisbelow(True)
        if right_refs:
            axes[True].grid(False)
        if not series or all(all(math.isnan(v) for v in s[3]) for s in series):
            ax.text(0.5, 0.5, "No data", color=MUTED, fontsize=12, ha="center", va="center",
                    transform=ax.transAxes)
        handles = []
        for i, (label, ref, xs, ys) in enumerate(series):
            a = axes[ref in right_refs]
            (line,) = a.plot(xs, ys, color=PALETTE[i % len(PALETTE)], linewidth=1.2, label=label)
            a.fill_between(xs, ys, color=PALETTE[i % len(PALETTE)], alpha=0.08, linewidth=0)
            handles.append(line)
        for is_right, a in axes.items():
            ys = [v for (_, ref, _, vals) in series if (ref in right_refs) == is_right
                  for v in vals if not math.isnan(v)]
            top = max(ys, default=1.0)
            if ys and min(ys) >= 0:
                a.set_ylim(bottom=0, top=top * 1.1 if top > 0 else 1)
            a.yaxis.set_major_locator(MaxNLocator(5))
            a.yaxis.set_major_formatter(FuncFormatter(formatter(right_unit if is_right else unit, top)))
        ax.set_xlim(dt.datetime.fromtimestamp(args.start, dt.timezone.utc),
                    dt.datetime.fromtimestamp(args.end, dt.timezone.utc))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=dt.timezone.utc))
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8, tz=dt.timezone.utc))
        if handles:
            frame_leg = fig.add_axes(px(x0 + 8, y0 + h - legend_px - 4, w - 16, legend_px))
            frame_leg.set_axis_off()
            frame_leg.legend(handles=handles, loc="upper left", ncol=ncol, frameon=False,
                             fontsize=7.5, labelcolor=TEXT, handlelength=1.2,
                             borderaxespad=0, columnspacing=1.2, handletextpad=0.5,
                             labelspacing=0.25)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=dpi, facecolor=BG)
    print(f"render_dashboard.py: wrote {args.out} ({len(panels)} panels, "
          f"{sum(len(r) for r in results.values())} series)", file=sys.stderr)
    return report(rejected, empty)


def draw_stat(fig, px, panel, series, unit, x0, y0, w, h):
    ax = fig.add_axes(px(x0, y0 + 30, w, h - 30))
    ax.set_axis_off()
    last = [s[3][-1] for s in series if s[3] and not math.isnan(s[3][-1])]
    text = "No data" if not last else "  ".join(formatter(unit, max(last))(v, None) for v in last)
    ax.text(0.5, 0.5, text, color=PALETTE[0] if last else MUTED, fontsize=22, ha="center",
            va="center", transform=ax.transAxes, weight="bold")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("render", "check"):
        s = sub.add_parser(name)
        s.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
        s.add_argument("--dashboard", default=str(DASHBOARD))
        s.add_argument("--scrape-interval", type=float, default=2 if name == "render" else 1,
                       help="seconds; what Grafana's data source would be told")
    r = sub.choices["render"]
    r.add_argument("--start", type=float, required=True, help="Unix seconds")
    r.add_argument("--end", type=float, required=True, help="Unix seconds")
    r.add_argument("--out", default="docs/dashboard.png")
    args = p.parse_args()
    dashboard = json.loads(Path(args.dashboard).read_text())
    try:
        if args.cmd == "check":
            return check(args, dashboard)
        if args.end <= args.start:
            p.error("--end must be after --start")
        return render(args, dashboard)
    except QueryRejected as e:
        print(f"render_dashboard.py: {e}", file=sys.stderr)
        return 1
    except urllib.error.URLError as e:
        print(f"render_dashboard.py: cannot reach Prometheus at {args.prometheus}: {e.reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
