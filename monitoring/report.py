"""The skew report as JSON (for scripts and the trigger) and one offline HTML file (for people)."""
from __future__ import annotations

import datetime as dt
import html
import itertools
import json
from pathlib import Path

from common.atomic_files import create_new, replace_whole
from monitoring.skew import SkewReport


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def lines(report: SkewReport) -> list[str]:
    """The console table: per feature distance, threshold, verdict."""
    window = report.window
    seen = window.get("rows_seen") or report.rows
    rows = f"{report.rows} of {seen} served rows (a uniform sample)" if seen > report.rows else f"{report.rows} served rows"
    out = [f"model {report.model} version {report.version} (trained on span {report.span if report.span is not None else '-'})"
           f": {rows}, {_when(window.get('first_ts'))} .. {_when(window.get('last_ts'))}"]
    out.append(f"  {'feature':<24} {'check':<7} {'measure':<26} {'distance':>9} {'threshold':>9}  verdict")
    for r in report.results:
        dist = f"{r.distance:.4f}" if r.distance is not None else "-"
        thr = f"{r.threshold:.4f}" if r.threshold is not None else "-"
        out.append(f"  {r.feature:<24} {r.check:<7} {r.measure:<26} {dist:>9} {thr:>9}  {r.verdict}"
                   + (f"  ({r.detail})" if r.detail else ""))
    skipped = window.get("skipped") or {}
    if skipped:
        out.append("  skipped records: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())))
    over = report.over
    out.append(f"verdict: {'SKEW in ' + ', '.join(sorted({r.feature for r in over})) if over else 'ok, nothing over threshold'}")
    return out


def write(report: SkewReport, directory: Path) -> tuple[Path, Path]:
    """<dir>/skew-<time>.json and .html, written whole then renamed (a reader never sees half).

    A name another report of the same second holds gets -2, -3, ...: the JSON is
    hard-linked into place, which never replaces a file, so two monitors never
    overwrite each other.
    """
    directory.mkdir(parents=True, exist_ok=True)
    base = "skew-" + dt.datetime.fromtimestamp(report.created, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    names = (directory / f"{base if n == 1 else f'{base}-{n}'}.json" for n in itertools.count(1))
    json_path = create_new(names, json.dumps(report.as_json(), indent=1))
    return json_path, replace_whole(json_path.with_suffix(".html"), _html(report))


def _html(report: SkewReport) -> str:
    rows = []
    for r in report.results:
        colour = "#fdd" if r.verdict != "ok" else "#efe"
        cells = [r.feature, r.check, r.measure, "-" if r.distance is None else f"{r.distance:.4f}",
                 "-" if r.threshold is None else f"{r.threshold:.4f}", r.verdict, r.detail]
        rows.append(f'<tr style="background:{colour}">' + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("feature", "check", "measure", "distance", "threshold", "verdict", "detail"))
    summary = html.escape(lines(report)[0])
    verdict = html.escape(lines(report)[-1])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Skew report {report.model} "
            f"v{report.version}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;"
            f"border-bottom:1px solid #ccc;text-align:left}}</style></head><body><h1>Training/serving skew</h1>"
            f"<p>{summary}</p><p><b>{verdict}</b></p><table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<p>Log files: {html.escape(', '.join(report.window.get('files', [])))}</p></body></html>\n")
