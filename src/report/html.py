"""`report.html`: the sweep's report as one self-contained page (tables, PNG plots as data: URIs, a few lines of
inline JS to sort tables; nothing is fetched when it is viewed).

It renders the same filled sections report.md is rendered from (src.report.sections, kept in analysis.json),
so the two say the same thing; every section is always present (saying so when a sweep has nothing for it).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from src.cache import atomic_write_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0} tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums} .note{color:#666;font-size:13px}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee} pre{background:#f6f6f6;padding:.8em;
overflow:auto;font-size:12px;white-space:pre-wrap} .error{color:#a00}
"""

# Click a header to sort by it (numbers as numbers); then the render check the browser test reads from the DOM.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    function key(r){ var t = r.cells[col].textContent.trim(), n = parseFloat(t);
      if (/^p < /.test(t)) return parseFloat(t.slice(4)) / 2;  // below the printed floor, above 0
      return t !== '' && !isNaN(n) && isFinite(t) ? n : t; }
    rows.sort(function(a, b){ var x = key(a), y = key(b);
      if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
      return (typeof x === 'number' ? -1 : 1) * dir; });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
window.addEventListener('load', function(){
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement('p'); p.id = 'render-check'; p.className = 'note';
  p.dataset.imagesOk = ok; p.dataset.imagesTotal = imgs.length;
  p.dataset.sections = document.querySelectorAll('section').length;
  p.textContent = 'rendered: ' + ok + '/' + imgs.length + ' images';
  document.body.appendChild(p);
});
"""


def _table(t: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    body = "".join("<tr>" + "".join(f'<td class="{"num" if _numeric(v) else "txt"}">{html.escape(v)}</td>'
                                    for v in r) + "</tr>" for r in t["rows"])
    caption = f'<p class="note">{html.escape(t["caption"])}</p>' if t["caption"] else ""
    return f'{caption}<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _numeric(v: str) -> bool:
    if v.startswith("p < "):  # a p-value below the printed floor (src.report.numbers.pvalue)
        return True
    try:
        float(v)
    except ValueError:
        return False
    return True


def _image(out: Path, name: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=note>{html.escape(name)}</figcaption></figure>")


def _code(c: dict[str, str]) -> str:
    pre = f"<pre{' class=command' if not c['fold'] else ''}>{html.escape(c['text'])}</pre>"
    if c["fold"]:
        return f"<details><summary>{html.escape(c['caption'])}</summary>{pre}</details>"
    return (f"<h3>{html.escape(c['caption'])}</h3>" if c["caption"] else "") + pre


def _section(s: dict[str, Any], out: Path) -> str:
    parts = [f'<p class="note">{html.escape(s["intro"])}</p>' if s["intro"] else "",
             f'<p class="note">{html.escape(s["empty"])}</p>' if s["empty"] else ""]
    parts += [f"<p>{html.escape(n)}</p>" for n in s["notes"]]
    parts += [_table(t) for t in s["tables"]]
    parts += [f"<p>{html.escape(n)}</p>" for n in s["after"]]
    parts += [_image(out, p) for p in s["images"] if (out / p).is_file()]
    parts += [_code(c) for c in s["code"]]
    return f'<section id="{s["id"]}"><h2>{html.escape(s["title"])}</h2>{"".join(parts)}</section>'


def write_html(out: Path, analysis: dict[str, Any] | None = None) -> Path:
    """Render `out/report.html` from the filled sections (analysis.json's "sections", the list report.md was
    rendered from) and the PNGs in `out`."""
    analysis = analysis if analysis is not None else json.loads((out / "analysis.json").read_text())
    body = "".join(_section(s, out) for s in analysis["sections"])
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Transfer report</title>"
            f"<style>{STYLE}</style></head><body><h1>Transfer report</h1>{body}<script>{SCRIPT}</script>"
            "</body></html>")
    path = out / "report.html"
    atomic_write_text(path, page, durable=False)
    return path
