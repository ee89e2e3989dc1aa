"""The report's static HTML page: tables inline, figures as <img>, links to every file.

Paths in the page are relative to its folder, so the folder can be moved, served, or opened
from MLflow's artifact view as it is.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from wsss.report.tables import RANDOM, Table, cell, write_text

WRAPPED = ("study_method", "strategy")  # long text columns wrap instead of widening the table

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 1500px; margin: 1em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 12.5px; margin: .4em 0 .8em; }
th, td { border: 1px solid #ccc; padding: 3px 5px; text-align: right; white-space: nowrap; }
td.wide { white-space: normal; min-width: 14em; max-width: 20em; }
th { background: #eef; text-align: center; } td.text { text-align: left; }
td.study { background: #f4f4fb; color: #555; } tr.random td.flag { color: #a35a00; font-weight: bold; }
tr.random td { background: #fff6e6; } tr.random td.study { background: #f3ecdf; }
tr.missing td { color: #999; }
.banner { background: #fff6e6; border: 1px solid #e0a040; padding: .6em 1em; margin: 1em 0; }
.meta { color: #555; font-size: 14px; } .files a { margin-right: 1em; }
details { margin: .3em 0; } summary { cursor: pointer; font-weight: bold; }
.grids { display: flex; flex-wrap: wrap; gap: 12px; } .grids figure { margin: 0; max-width: 49%; }
img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: 13px; color: #444; }
.note { color: #555; font-size: 13px; font-style: italic; }
"""


def link(path: Path, root: Path, text: str | None = None) -> str:
    relative = path.relative_to(root).as_posix()
    return f'<a href="{escape(relative)}">{escape(text or relative)}</a>'


def image(path: Path, root: Path, alt: str) -> str:
    return f'<img src="{escape(path.relative_to(root).as_posix())}" alt="{escape(alt)}">'


def table_html(table: Table, policy: str | None) -> str:
    """One policy's rows; random-init rows tinted and flagged, study columns shaded."""
    head = "".join(f"<th>{escape(header)}</th>" for _, header in table.shown)
    body = []
    for row in table.rows_for(policy):
        classes = [c for c, on in (("random", row.get("weights") == RANDOM),
                                   ("missing", row.get("run") == "not run")) if on]
        cells = []
        for column, _ in table.shown:
            value = row.get(column)
            kind = "study" if column.startswith("study_") and column != "study_method" else (
                "text" if not isinstance(value, float) else "")
            kind += " wide" if column in WRAPPED else ""
            if value == RANDOM:
                kind, value = "text flag", f"⚠ {RANDOM}"
            cells.append(f'<td class="{kind}">{escape(cell(value))}</td>')
        body.append(f'<tr class="{" ".join(classes)}">{"".join(cells)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def tables_section(tables: list[Table], files: dict[str, dict[str, Path]], root: Path,
                   configured: str) -> list[str]:
    parts = ['<h2 id="tables">Tables</h2>',
             f'<p class="meta">Each table is shown under every border policy for the trimap '
             f'border; the sweep was trained under <b>{escape(configured)}</b> (open below). '
             f'Shaded columns are the study\'s numbers.</p>']
    for table in tables:
        parts.append(f'<h3 id="{escape(table.key)}">{escape(table.title)}</h3>')
        parts.append('<p class="files">' + link(files[table.key]["csv"], root, "CSV") +
                     link(files[table.key]["md"], root, "markdown") + "</p>")
        for policy in table.policies():
            if policy is None:
                parts.append(table_html(table, None))
                continue
            opened = " open" if policy == configured else ""
            label = f"border policy: {policy}" + (" (configured)" if policy == configured else "")
            parts.append(f"<details{opened}><summary>{escape(label)}</summary>"
                         f"{table_html(table, policy)}</details>")
        parts += [f'<p class="note">{escape(note)}</p>' for note in table.notes]
    return parts


def figure_block(path: Path | None, root: Path, caption: str) -> str:
    if path is None:
        return f'<p class="note">{escape(caption)}: not drawn (no data in this sweep).</p>'
    return f"<figure>{image(path, root, caption)}<figcaption>{escape(caption)}</figcaption></figure>"


def grids_section(figures: list[dict[str, Any]], notes: list[str], root: Path) -> list[str]:
    parts = ['<h2 id="grids">Figure grids</h2>',
             '<p class="meta">Per method, its best run by test Dice: a fixed sample of test images '
             '(the same ids for every method) and its worst test images by Dice. Ground truth: '
             'white pet, black background, grey ignored border.</p>']
    for method in dict.fromkeys(f["method"] for f in figures):
        group = [f for f in figures if f["method"] == method]
        parts.append(f"<h3>{escape(method)}</h3><div class=\"grids\">")
        parts += [figure_block(f["path"], root, f["title"]) for f in group]
        parts.append("</div>")
    parts += [f'<p class="note">{escape(note)}</p>' for note in notes]
    return parts


def header(context: dict[str, Any]) -> list[str]:
    runs = context["runs"]
    parent = runs.parent
    parts = [f"<h1>Weakly supervised segmentation on Oxford-IIIT Pet — "
             f"experiment {escape(runs.experiment.name)}</h1>",
             f'<p class="meta">Sweep parent run <code>{escape(parent.info.run_id)}</code> '
             f'({escape(parent.info.run_name or "")}, {escape(parent.info.status)}), sweep '
             f'fingerprint {escape(parent.data.tags.get("wsss.sweep", "?"))}, git commit '
             f'{escape(parent.data.tags.get("git_commit", "?"))}; {len(runs.children)} child runs. '
             f'Report generated {escape(context["generated"])}.<br>Study numbers: '
             f'{escape(context["source"])}.</p>']
    if not context.get("scored", True):
        parts.append('<div class="banner">No ground truth in this sweep\'s data: nothing is scored, '
                     'so the study\'s tables and the quality figures are left out (see the runs '
                     'table below).</div>')
    if context["random_runs"]:
        parts.append(f'<div class="banner">⚠ <b>{context["random_runs"]} of the reported runs use '
                     f'random-init weights</b> (flagged in every table): their numbers show the '
                     f'pipeline works end to end, not how good the methods are.</div>')
    contents = [("tables", "Tables 1–5"), ("quality", "Pseudo-mask vs model quality"),
                ("threshold", "Threshold curve"),
                *([("review", "What a review is worth")] if context.get("review") is not None else []),
                ("grids", "Figure grids"), ("files", "Files")]
    parts.append("<p>" + " · ".join(f'<a href="#{key}">{escape(text)}</a>' for key, text in contents)
                 + "</p>")
    return parts


def write_html(context: dict[str, Any], path: Path) -> Path:
    """index.html from the report's context (see ``wsss.report.build.build_report``)."""
    root = path.parent
    parts = header(context)
    parts += tables_section(context["tables"], context["table_files"], root, context["policy"])
    if context.get("scored", True):
        parts += quality_section(context, root)
    if context.get("review") is not None:
        parts += review_section(context, root)
    parts += [f'<p class="note">{escape(note)}</p>' for note in context["notes"]]
    parts += grids_section(context["grids"], context["grid_notes"], root)
    parts.append('<h2 id="files">Files</h2><ul>')
    parts += [f"<li>{link(file, root)}</li>" for file in sorted(context["files"])]
    parts.append("</ul>")
    title = f"WSSS report — {context['runs'].experiment.name}"
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return write_text(path, page)


def quality_section(context: dict[str, Any], root: Path) -> list[str]:
    """The scatter of pseudo-mask vs model quality and the threshold curve (scored sweeps)."""
    return ['<h2 id="quality">Pseudo-mask quality vs final model quality</h2>',
              figure_block(context["scatter"], root, "One point per trial: x = pseudo-mask Dice of "
                           "the labels it trained on (a curriculum: its last source), y = its test "
                           "Dice; ground-truth trials at x = 1."),
              f'<p>{escape(context["claim"])}</p>',
              '<p class="files">' + link(context["scatter_csv"], root, "points (CSV)") + "</p>",
              '<h2 id="threshold">Threshold curve</h2>',
              figure_block(context["threshold"], root, "Dice, precision and recall against the "
                           "CAM threshold: trained models (Table 2.1/2.2 trials, with the study's "
                           "Table 2.2 dashed) and the stored heatmaps thresholded at read time."),
              '<p class="files">' + link(context["threshold_csv"], root, "points (CSV)") + "</p>"]


def review_section(context: dict[str, Any], root: Path) -> list[str]:
    """The review curve: what reviewing K % of the training images bought (``jobs/review_curve.py``)."""
    rows = [line.strip("|").split("|") for line in context["review_table"].splitlines()]
    head = "".join(f"<th>{escape(cell.strip())}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(cell.strip())}</td>" for cell in row) + "</tr>"
                   for row in rows[2:])
    return ['<h2 id="review">What a review is worth</h2>',
            f"<p>{escape(context['review_text'])}</p>" if context.get("review_text") else "",
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
            figure_block(context["review"], root, "Test Dice against the share of training images "
                         "reviewed; full supervision dashed."),
            '<p class="files">' + link(context["review_csv"], root, "points (CSV)") + "</p>"]
