"""The study's Tables 1-5 (plus pseudo-mask quality and the classifier) from a sweep's runs.

Each table has one row per study row (ours beside the study's numbers; "not run" where the
sweep has no such run) plus our runs the study has no row for, repeated under every border
policy (a ``border_policy`` column). Values are MLflow's numbers, unrounded in the CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss import storage
from wsss.metrics import BORDER_POLICIES, METRIC_NAMES
from wsss.paper import BY_KEY, CLASSIFIER_ACCURACY, ROWS, SOURCE, TABLE5
from wsss.report.runs import SweepRuns, is_random_init, scores, threshold_of

TITLES = {
    "1": "Table 1 — full supervision (ground-truth masks)",
    "2.1": "Table 2.1 — CAM family at threshold 0.5 → DLV3",
    "2.2": "Table 2.2 — Grad-CAM threshold ablation → DLV3",
    "3": "Table 3 — boxes from the thresholded CAM → DLV3",
    "4": "Table 4 — SAM2 (hiera, no fine-tuning): as prediction, or as pseudo-label → DLV3",
    "beyond": "Beyond the study — generators and training options it does not have (CRF, "
              "agreement, SAM2 refinement and CAM-guided SAM2 selection, self-training)",
    "other": "Other runs of the sweep (no table of the study)",
}
RESULT_COLUMNS = ("border_policy", "table", "paper_row", "study_method", "run", "run_id", "stage",
                  "method", "model", "labels", "threshold", "epochs", "weights", *METRIC_NAMES,
                  "per_image_dice", *(f"study_{m}" for m in METRIC_NAMES), "delta_dice")
RESULT_SHOWN = (("study_method", "study's row"), ("run", "our run"), ("model", "model"),
                ("labels", "labels"), ("threshold", "thr"), ("weights", "weights"),
                *((col, head) for m, h in zip(METRIC_NAMES, ("Dice", "IoU", "Acc", "Prec", "Rec"))
                  for col, head in ((m, h), (f"study_{m}", "study"))),
                ("per_image_dice", "Dice/img"))
RANDOM, CONFIGURED = "random-init", "configured"


@dataclass
class Table:
    """One report table: every row carries all ``columns``; ``shown`` go to markdown/HTML."""

    key: str
    title: str
    columns: tuple[str, ...]
    shown: tuple[tuple[str, str], ...]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def policies(self) -> list[str]:
        found = list(dict.fromkeys(row.get("border_policy") for row in self.rows))
        return [p for p in found if p] or [None]

    def rows_for(self, policy: str | None) -> list[dict[str, Any]]:
        return [row for row in self.rows if policy is None or row.get("border_policy") == policy]


def weights_flag(run: Any) -> str:
    return RANDOM if is_random_init(run) else CONFIGURED


def result_row(run: Any, policy: str, table: str) -> dict[str, Any]:
    """One trial (stage train) or direct evaluation under a border policy."""
    tags, params = run.data.tags, run.data.params
    direct = tags.get("stage") == "direct_eval"
    paper = BY_KEY.get(tags.get("paper_row", ""))
    values = scores(run, "test", policy)
    row = {"border_policy": policy, "table": table, "paper_row": tags.get("paper_row", ""),
           "study_method": paper.method if paper else "", "run": run.info.run_name,
           "run_id": run.info.run_id, "stage": tags.get("stage"), "method": tags.get("method", ""),
           "model": "(mask as prediction)" if direct else params.get("model", ""),
           "labels": tags.get("labels") if direct else params.get("labels", tags.get("labels", "")),
           "threshold": threshold_of(run), "epochs": None if direct else params.get("epochs"),
           "weights": weights_flag(run), **values}
    row.update(study_values(paper))
    if paper is not None and values["dice"] is not None:
        row["delta_dice"] = values["dice"] - paper.dice
    return row


def study_values(paper: Any) -> dict[str, Any]:
    return {f"study_{m}": (getattr(paper, m) if paper else None) for m in METRIC_NAMES}


def missing_row(paper: Any, policy: str, table: str) -> dict[str, Any]:
    return {"border_policy": policy, "table": table, "paper_row": paper.key,
            "study_method": paper.method, "run": "not run", **study_values(paper)}


def scored_runs(runs: SweepRuns) -> list[Any]:
    """Trials and direct evaluations that have test metrics."""
    return [run for run in runs.stage("train") + runs.stage("direct_eval")
            if "test_micro_dice" in run.data.metrics]


def result_tables(runs: SweepRuns) -> list[Table]:
    """Tables 1, 2.1, 2.2, 3, 4 and "other", each under every border policy."""
    scored = scored_runs(runs)
    by_table: dict[str, list[Any]] = {}
    for run in scored:
        key = run.data.tags.get("table") or "other"
        by_table.setdefault(key if key in TITLES else "other", []).append(run)
    tables = []
    for key, title in TITLES.items():
        paper_rows = [row for row in ROWS if row.table == key]
        if not paper_rows and not by_table.get(key):
            continue
        rows = []
        for policy in BORDER_POLICIES:
            rows += _table_rows(key, paper_rows, by_table.get(key, []), policy)
        tables.append(Table(f"table_{key}", title, RESULT_COLUMNS, RESULT_SHOWN, rows))
    return tables


def _by_dice(row: dict) -> float:
    return -(row["dice"] if row.get("dice") is not None else -1.0)


def _table_rows(key: str, paper_rows: list, runs: list[Any], policy: str) -> list[dict]:
    rows, used = [], set()
    for paper in paper_rows:
        matched = [result_row(run, policy, key) for run in runs
                   if run.data.tags.get("paper_row") == paper.key]
        used.update(row["run_id"] for row in matched)
        rows += sorted(matched, key=_by_dice) or [missing_row(paper, policy, key)]
    extra = [result_row(run, policy, key) for run in runs if run.info.run_id not in used]
    return rows + sorted(extra, key=_by_dice)


SUMMARY_STRATEGIES = {"t1.deeplabv3": ("1",), "t2.2.gradcam@0.01": ("2.1", "2.2"),
                      "t3.curriculum": ("3",), "t4.sam2_pseudo": ("4",)}
SUMMARY_COLUMNS = ("border_policy", "strategy", "paper_row", "study_dice", "study_iou", "run",
                   "run_id", "dice", "iou", "best_run", "best_run_id", "best_dice", "best_iou",
                   "weights")
SUMMARY_SHOWN = (("strategy", "strategy"), ("study_dice", "study Dice"), ("study_iou", "study IoU"),
                 ("run", "our run (same row)"), ("dice", "Dice"), ("iou", "IoU"),
                 ("best_run", "our best trained run"), ("best_dice", "Dice"), ("best_iou", "IoU"),
                 ("weights", "weights"))


def summary_table(runs: SweepRuns) -> Table:
    """Table 5: per supervision strategy, the study's pick beside ours and our best trial."""
    trained = [run for run in scored_runs(runs) if run.data.tags.get("stage") == "train"]
    rows = []
    for policy in BORDER_POLICIES:
        for strategy, key in TABLE5:
            paper = BY_KEY[key]
            row = {"border_policy": policy, "strategy": strategy, "paper_row": key,
                   "study_dice": paper.dice, "study_iou": paper.iou, "run": "not run"}
            same = sorted((result_row(r, policy, "5") for r in trained
                           if r.data.tags.get("paper_row") == key), key=_by_dice)
            if same:
                row.update(run=same[0]["run"], run_id=same[0]["run_id"], dice=same[0]["dice"],
                           iou=same[0]["iou"])
            strategy_runs = [r for r in trained if r.data.tags.get("table") in SUMMARY_STRATEGIES[key]]
            best = sorted((result_row(r, policy, "5") for r in strategy_runs), key=_by_dice)
            if best:
                row.update(best_run=best[0]["run"], best_run_id=best[0]["run_id"],
                           best_dice=best[0]["dice"], best_iou=best[0]["iou"])
            flagged = [r for r in strategy_runs if is_random_init(r)]
            row["weights"] = RANDOM if flagged else (CONFIGURED if strategy_runs else "")
            rows.append(row)
    return Table("table_5", "Table 5 — summary: each supervision strategy, the study's pick and "
                 "our best trained run", SUMMARY_COLUMNS, SUMMARY_SHOWN, rows)


PSEUDO_COLUMNS = ("border_policy", "labeler_id", "method", "kind", "threshold", "images",
                  "ignored_fraction", *METRIC_NAMES, "per_image_dice", "weights", "run", "run_id")
PSEUDO_SHOWN = (("labeler_id", "mask set"), ("method", "labeler"), ("kind", "kind"),
                ("threshold", "thr"), ("images", "images"), ("dice", "Dice"), ("iou", "IoU"),
                ("accuracy", "Acc"), ("precision", "Prec"), ("recall", "Rec"),
                ("per_image_dice", "Dice/img"), ("ignored_fraction", "ignored"),
                ("weights", "weights"))


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def pseudo_table(runs: SweepRuns) -> Table:
    """Pseudo-mask quality of every mask set (train + val + test images) against the trimaps."""
    rows = []
    for policy in BORDER_POLICIES:
        for run in sorted(runs.stage("pseudo_masks"), key=lambda r: r.data.tags.get("labeler_id", "")):
            metrics, params = run.data.metrics, run.data.params
            rows.append({"border_policy": policy, "labeler_id": run.data.tags.get("labeler_id"),
                         "method": run.data.tags.get("method"), "kind": params.get("kind"),
                         "threshold": threshold_of(run), "images": _count(metrics.get("pseudo_images")),
                         "ignored_fraction": metrics.get("pseudo_ignored_fraction"),
                         **scores(run, "pseudo", policy), "weights": weights_flag(run),
                         "run": run.info.run_name, "run_id": run.info.run_id})
    return Table("pseudo_masks", "Pseudo-mask quality per generator (train + val + test images "
                 "against the trimaps)", PSEUDO_COLUMNS, PSEUDO_SHOWN, rows)


CLASSIFIER_COLUMNS = ("backbone", "run", "run_id", "weights", "epochs", "test_accuracy",
                      "best_val_accuracy", "study_test_accuracy")
CLASSIFIER_SHOWN = (("backbone", "backbone"), ("run", "our run"), ("weights", "weights"),
                    ("epochs", "epochs"), ("test_accuracy", "test accuracy"),
                    ("best_val_accuracy", "best val accuracy"),
                    ("study_test_accuracy", "study test accuracy"))


def classifier_table(runs: SweepRuns) -> Table:
    """Table 2's classifiers (breed accuracy): the study's three beside the one the sweep used."""
    ours = runs.classifier
    backbone = ours.data.params.get("backbone") if ours else None
    rows = [{"backbone": name, "run": "not run", "study_test_accuracy": accuracy}
            for name, accuracy in CLASSIFIER_ACCURACY.items() if name != backbone]
    if ours is not None:
        rows.insert(0, {"backbone": backbone, "run": ours.info.run_name, "run_id": ours.info.run_id,
                        "weights": weights_flag(ours), "epochs": ours.data.params.get("epochs"),
                        "test_accuracy": ours.data.metrics.get("test_accuracy"),
                        "best_val_accuracy": ours.data.metrics.get("best_val_accuracy"),
                        "study_test_accuracy": CLASSIFIER_ACCURACY.get(backbone)})
    notes = ["The study used ResNet101 for its CAMs."]
    if ours is None:
        notes.append("No classifier run found for this sweep (none needed, or logged elsewhere).")
    return Table("classifier", "Table 2 (left) — breed classifiers behind the CAMs",
                 CLASSIFIER_COLUMNS, CLASSIFIER_SHOWN, rows, notes)


UNSCORED_COLUMNS = ("run", "run_id", "labels", "model", "epochs", "select", "val_dice", "val_target",
                    "model_version", "weights")
UNSCORED_SHOWN = (("run", "run"), ("labels", "labels"), ("model", "model"), ("epochs", "epochs"),
                  ("select", "select"), ("val_dice", "val Dice (own labels)"),
                  ("model_version", "registered version"), ("weights", "weights"))
NO_TRUTH_NOTE = ("This sweep's data has no ground truth, so nothing is scored: there are no test "
                 "metrics and no tables of the study to set them beside. Each run's val Dice is "
                 "against its own labels (how well it fits them, not how right they are); review the "
                 "masks themselves with `wsss export`.")


def unscored_table(runs: SweepRuns) -> Table:
    """The trials of a sweep without ground truth: what ran, on which labels, what it fits."""
    rows = [{"run": run.info.run_name, "run_id": run.info.run_id,
             "labels": run.data.params.get("labels", ""), "model": run.data.params.get("model", ""),
             "epochs": run.data.params.get("epochs"), "select": run.data.params.get("select"),
             "val_dice": run.data.metrics.get("val_micro_dice"),
             "val_target": run.data.params.get("val_target"),
             "model_version": run.data.tags.get("wsss.model_version"), "weights": weights_flag(run)}
            for run in runs.stage("train")]
    return Table("runs", "Runs of the sweep (no ground truth: unscored)", UNSCORED_COLUMNS,
                 UNSCORED_SHOWN, rows, [NO_TRUTH_NOTE])


def class_table(runs: SweepRuns) -> Table | None:
    """Several classes per image: each scored run's mIoU and its IoU per class (background
    first), best mIoU first; None for a one-class sweep."""
    scored = [run for run in runs.stage("train") if "test_miou" in run.data.metrics]
    if not scored:
        return None
    names = sorted({key.removeprefix("test_iou_") for run in scored for key in run.data.metrics
                    if key.startswith("test_iou_")} - {"background"})
    classes = ["background", *names]
    rows = [{"run": run.info.run_name, "run_id": run.info.run_id,
             "labels": run.data.params.get("labels", ""), "model": run.data.params.get("model", ""),
             "weights": weights_flag(run), "miou": run.data.metrics["test_miou"],
             **{f"iou_{name}": run.data.metrics.get(f"test_iou_{name}") for name in classes}}
            for run in scored]
    rows.sort(key=lambda row: -row["miou"])
    shown = (("run", "run"), ("labels", "labels"), ("model", "model"), ("weights", "weights"),
             ("miou", "mIoU"), *((f"iou_{name}", name) for name in classes))
    return Table("classes", "Per-class IoU on test (several classes per image)",
                 ("run", "run_id", "labels", "model", "weights", "miou", *(f"iou_{n}" for n in classes)),
                 shown, rows, ["mIoU averages the IoU of background (where the data has one) and every "
                               "class the test set holds or a run predicted (PASCAL VOC's definition); "
                               "'-' where a class is in neither."])


def all_tables(runs: SweepRuns) -> list[Table]:
    if not scored_runs(runs):
        return [unscored_table(runs), classifier_table(runs)]
    tables = result_tables(runs)
    for table in tables:
        table.notes.append(f"Study numbers: {SOURCE}.")
    classes = class_table(runs)
    return [*([classes] if classes else []), *tables, summary_table(runs), pseudo_table(runs),
            classifier_table(runs)]


# ---- output -----------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A value as the markdown/HTML tables show it (4 decimals; '–' for nothing)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.0e}"
    return str(value)


def to_csv(table: Table) -> str:
    """Every column, values unrounded (``repr`` of floats), empty for nothing."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table.columns, extrasaction="ignore")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in table.columns})
    return buffer.getvalue()


def to_markdown(table: Table) -> str:
    """The shown columns, one section per border policy; random-init flagged in bold."""
    lines = [f"## {table.title}", ""]
    for policy in table.policies():
        if policy is not None:
            lines += [f"### border policy: {policy}", ""]
        lines.append("| " + " | ".join(head for _, head in table.shown) + " |")
        lines.append("|" + "---|" * len(table.shown))
        for row in table.rows_for(policy):
            cells = [cell(row.get(col)) for col, _ in table.shown]
            cells = [f"**{c}**" if c == RANDOM else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"_{note}_" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write whole or not at all (``storage.write_text``)."""
    storage.write_text(path, text)
    return path


def write_tables(tables: list[Table], folder: Path) -> dict[str, dict[str, Path]]:
    """``<key>.csv`` and ``<key>.md`` per table under ``folder``; their paths by key."""
    return {table.key: {"csv": write_text(folder / f"{table.key}.csv", to_csv(table)),
                        "md": write_text(folder / f"{table.key}.md", to_markdown(table))}
            for table in tables}
