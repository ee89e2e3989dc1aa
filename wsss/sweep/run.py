"""The main job: one config describes a study; stages run in order, each reused when done.

classifier -> mask sets -> direct evaluations -> Ray Tune trials (one Train run each) ->
summary. MLflow gets one parent run per sweep (found again on a rerun) and one child per
mask set, direct evaluation and trial, tagged with stage and method. Only this driver writes
to MLflow, so a local SQLite store sees one writer. Rerunning the same command finishes only
what is missing: mask sets resume per image, the Tune experiment is restored, Train runs
resume from their checkpoints, and children already logged are not logged again.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path
from typing import Any

from wsss import console, storage, tracking
from wsss.config import SPACE_KEYS, ConfigError, StudyConfig, TrainConfig, parse_config
from wsss.data.prepare import describe_data, prepare_dataset
from wsss.identity import file_hash, stable_hash
from wsss.labelers.registry import get_labeler_class
from wsss.masks.graph import cluster_resources
from wsss.masks.pipeline import generate_masks
from wsss.masks.plan import labeler_context
from wsss.masks.reviewed import detect_format, import_reviewed, source_hash
from wsss.masks.set_log import log_mask_set, made_on_random_weights
from wsss.metrics import flat_metrics
from wsss.models.segmentation import ModelSpec
from wsss.raycluster import ensure_ray
from wsss.sweep.progress import WORK_SECONDS, StageClock, trial_progress
from wsss.sweep.sweep_log import (
    KEY_TAG,
    console_table,
    find_parent,
    log_direct_eval,
    log_stage_seconds,
    log_summary,
    logged_keys,
    set_best_alias,
    summary_rows,
    to_markdown,
)
from wsss.train.classifier import resolve_classifier
from wsss.train.segmentation import TrainingOutcome, fit_segmentation, trains_in_process
from wsss.train.study_labels import check_truth_for
from wsss.train.train_log import log_training

TRIAL_METRIC = "val_micro_dice"


def sweep_fingerprint(config: StudyConfig, dataset: Any) -> str:
    """Changes when anything that shapes the results changes: the config (not tracking or
    storage), the dataset's files, and weights read from files the config names (a classifier
    checkpoint, SAM2 checkpoints). A trained classifier follows from the config and the data."""
    payload = config.model_dump(mode="json", exclude={"tracking": True, "sweep": {"storage"}})
    context = labeler_context(config, None)
    weights = {spec.key: get_labeler_class(spec.name)(spec.params, context).weights_id()
               for spec in config.labelers if get_labeler_class(spec.name).stage != "heatmap"}
    classifier = file_hash(config.classifier.checkpoint) if config.classifier.checkpoint else None
    reviewed = {path: source_hash(path, detect_format(path)) for path in reviewed_sources(config)}
    return stable_hash({"config": payload, "dataset": dataset.fingerprint(), "weights": weights,
                        "classifier": classifier, **({"reviewed": reviewed} if reviewed else {})}, 10)


def reviewed_sources(config: StudyConfig) -> list[str]:
    """Every reviewed file or folder the sweep's trials lay over their labels."""
    paths = [config.train.reviewed, *(trial.reviewed for trial in config.sweep.trials),
             *config.sweep.space.get("reviewed", [])]
    return sorted({path for path in paths if path})


def import_reviews(config: StudyConfig, dataset: Any) -> None:
    """Import each reviewed file once, on the driver, before the trials: its problems are shown
    here, and every trial then finds the set made (``wsss.masks.reviewed``)."""
    for path in reviewed_sources(config):
        try:
            result = import_reviewed(config.pipeline.store, path, dataset, config.data.image_size)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(f"reviewed: {error}") from None
        for problem in result.problems:
            console.say(f"  {result.key}: left out: {problem}")
        console.say(f"reviewed masks {result.key}: {len(result.imported)} images"
                    f"{' (imported before)' if result.reused else ''}, {len(result.problems)} left out")


def trial_rows(config: StudyConfig) -> list[dict[str, Any]]:
    """One row per explicit trial (or one for the ``train`` section alone), with a stable key."""
    specs = config.sweep.trials or []
    rows = []
    for spec in specs:
        overrides = spec.model_dump(mode="json", include=set(spec.overrides()))
        rows.append({"name": spec.name, "table": spec.table, "paper_row": spec.paper_row,
                     "overrides": overrides})
    if not rows:
        rows = [{"name": None, "table": None, "paper_row": None, "overrides": {}}]
    return rows


def expand_trials(config: StudyConfig) -> list[dict[str, Any]]:
    """Every (row x space point) the grid will run, each with its key and merged overrides."""
    space = config.sweep.space
    keys = [k for k in SPACE_KEYS if k in space]
    points = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if config.sweep.mode == "sample" and points:
        import random

        rng = random.Random(config.train.seed)  # seeded, so a rerun samples the same points
        points = [{k: rng.choice(space[k]) for k in keys} for _ in range(config.sweep.num_samples)]
    trials = []
    for row, point in itertools.product(trial_rows(config), points or [{}]):
        overrides = {**row["overrides"], **point}
        key = stable_hash(overrides, 8)
        name = row["name"] or "-".join(f"{k}={v}" for k, v in sorted(overrides.items()) if k != "labels"
                                       ) or "train"
        trials.append({**row, "overrides": overrides, "key": key,
                       "name": f"{name}-{key}" if point else (row["name"] or f"trial-{key}")})
    return trials


def trial_config(study: dict[str, Any], overrides: dict[str, Any], name: str = "") -> StudyConfig:
    """The study config with one trial's ``train`` overrides applied (and re-validated)."""
    train = study.get("train", {})
    configured = ModelSpec(train.get("model", TrainConfig().model), train.get("model_options", {}))
    model = configured.override(overrides.get("model"), overrides.get("model_options"))
    merged = {**train, **overrides, "model_options": dict(model.options)}
    if "threshold" not in overrides and not parse_config(study).heatmap_label(merged.get("labels", "gt")):
        merged["threshold"] = None  # the study's threshold cuts heatmaps; this trial has none
    return parse_config({**study, "train": merged}, f"sweep trial {name}".strip())


def method_of(config: StudyConfig) -> str:
    """The labeler name behind a trial's labels ('gt', a labeler name, or 'a+b' for schedules)."""
    labels = config.train.labels
    keys = [labels] if isinstance(labels, str) else [step.labels for step in labels]
    names = ["gt" if key == "gt" else config.labeler(key).name for key in keys]
    return "+".join(dict.fromkeys(names))


class TuneReports:
    """A ``ray.train.UserCallback``'s ``after_report`` for the loop that trains in the trial's
    own process: each report is a Tune result, as ``TuneReportCallback`` makes Train's."""

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        from ray import tune

        tune.report(metrics[0])


def run_trial(params: dict[str, Any], study: dict[str, Any], sweep: str) -> None:
    """Tune trainable: one trial = one training run (in this process with one worker, else a
    Ray Train run), its epochs reported to Tune as they come."""
    import json

    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = params["trial"]
    config = trial_config(study, trial["overrides"])
    here = trains_in_process(config)
    outcome = fit_segmentation(config, name=f"{sweep}-{trial['key']}", here=here,
                               callbacks=[TuneReports() if here else TuneReportCallback()])
    # beside the run's checkpoints (a folder or s3://): the driver may be on another node
    path = storage.write_text(storage.join(outcome.run_dir, "outcome.json"),
                              json.dumps(outcome.__dict__, default=str))
    tune.report({**flat_metrics(outcome.test, "test_"), "outcome_path": path,
                 "trial_key": trial["key"], TRIAL_METRIC: outcome.history[-1].get(TRIAL_METRIC, 0.0)
                 if outcome.history else 0.0, WORK_SECONDS: outcome.timings["work_seconds"]})


def runnable_trials(trials: list[dict], study: dict[str, Any], dataset: Any) -> tuple[list[dict], list[str]]:
    """The trials this data can run, and one line per trial left out: on data without ground
    truth, the ones that train or select on it (a preset's Table 1 rows on a user's images)."""
    kept, skipped = [], []
    for trial in trials:
        trial_study = trial_config(study, trial["overrides"], trial["name"])
        try:
            check_truth_for(trial_study, trial_study.train.labels, dataset)
            kept.append(trial)
        except ConfigError as error:
            skipped.append(f"{trial['name']}: {error}")
    for line in skipped:
        print(f"skipping trial {line}", file=sys.stderr)
    if trials and not kept:
        raise ConfigError("no trial of this sweep can run on this data:\n  " + "\n  ".join(skipped))
    return kept, skipped


def concurrency(config: StudyConfig, cpus: int, gpus: int) -> int:
    """How many trials fit side by side; raises when one trial does not fit at all."""
    scaling = config.train.scaling
    workers = max(scaling.num_workers, 1)
    need_cpus = workers * scaling.cpus_per_worker
    need_gpus = workers if scaling.use_gpu else 0
    if need_gpus > gpus:
        raise ConfigError(f"train.scaling asks for {need_gpus} GPU(s) per trial but the cluster has "
                          f"{gpus}; lower train.scaling.num_workers or set use_gpu: false")
    if need_cpus > cpus:
        raise ConfigError(f"train.scaling asks for {need_cpus:g} CPUs per trial but the cluster has "
                          f"{cpus}; lower num_workers or cpus_per_worker")
    fits = int(cpus // need_cpus)
    if need_gpus:
        fits = min(fits, gpus // need_gpus)
    return max(1, min(fits, config.sweep.max_concurrent_trials or fits))


# A trial that starts Ray Train only coordinates its Train workers: it holds no CPU. Tune
# refuses an empty bundle, so it asks for one byte of memory. (A 0.01-CPU share per trial left
# 1.98 of 2 CPUs for two 1-CPU worker groups: the second trial's workers waited for the first
# trial to end.) A trial that trains its one worker itself holds that worker's resources.
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 1}


def trial_resources(config: StudyConfig) -> dict[str, float]:
    """What each trial's own process holds (every trial of a sweep shares the train section's
    scaling: a trial overrides labels, model and optimisation, never the workers)."""
    if not trains_in_process(config):
        return TRIAL_DRIVER_RESOURCES
    scaling = config.train.scaling
    return {"cpu": scaling.cpus_per_worker, "gpu": 1 if scaling.use_gpu else 0}


def run_tune(config: StudyConfig, fingerprint: str, trials: list[dict], cpus: int,
             gpus: int) -> tuple[list[Any], list[float]]:
    """Run (or restore and finish) the Tune experiment; returns its results and the overhead
    seconds of each trial it ran (``wsss.sweep.progress.overhead_note``; none on a restore)."""
    from ray import tune

    root, name = storage.absolute(config.sweep.storage), f"{config.name}-{fingerprint}"
    path = storage.join(root, name)  # a folder or s3://...: Tune stores and restores either
    # The study travels once through the object store; the trials' table shows only the rows.
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, study=config.model_dump(mode="json"), sweep=name),
        trial_resources(config))
    progress = trial_progress(len(trials))
    if tune.Tuner.can_restore(path):
        console.say(f"resuming the sweep's trials from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        scheduler = None
        if config.sweep.asha:
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(metric=TRIAL_METRIC, mode="max", grace_period=1)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)},
            # a trial that trains in its own process leaves it as it found it: the next trial
            # takes it over rather than starting (and importing torch in) a new one
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(config, cpus, gpus),
                                        scheduler=scheduler, reuse_actors=trains_in_process(config)),
            run_config=tune.RunConfig(name=name, storage_path=root,
                                      failure_config=tune.FailureConfig(max_failures=config.sweep.max_failures),
                                      callbacks=[progress],
                                      verbose=1 if console.verbose() or console.log_path() is None else 0))
    results = list(tuner.fit())
    return results, list(progress.overheads)


def start_parent(config: StudyConfig, fingerprint: str, experiment_id: str, trials: list[dict]) -> str:
    """This sweep's parent run: the one from an earlier attempt, or a new one."""
    parent_id = find_parent(experiment_id, fingerprint)
    if parent_id is None:
        params = {"study": config.name, "fingerprint": fingerprint, "trials": len(trials),
                  "labelers": [s.key for s in config.labelers], "data_root": config.data.root,
                  "data_format": config.data.format, "data_manifest": config.data.manifest,
                  "image_size": config.data.image_size, "border_policy": config.data.border_policy,
                  "weights_policy": config.weights_policy}
        with tracking.run(f"sweep-{config.name}", tags={"stage": "sweep", "wsss.sweep": fingerprint},
                          params=params, random_weights=config.weights_policy == "random") as active:
            parent_id = active.info.run_id
    return parent_id


def log_mask_sets(config: StudyConfig, summary: Any, records: list, parent_id: str, done: set[str]) -> None:
    todo = [plan for plan in summary.plans if f"masks:{plan.spec.key}:{plan.fingerprint}" not in done]
    with console.Stage("mask set runs", total=len(todo), unit="to MLflow") as stage:
        for plan in todo:
            key = f"masks:{plan.spec.key}:{plan.fingerprint}"
            log_mask_set(plan, summary.plans, summary, config, records, parent_id, {KEY_TAG: key})
            stage.advance(1)
        stage.done(f"{len(todo)} logged, {len(summary.plans) - len(todo)} already there")


def log_direct_evals(config: StudyConfig, summary: Any, dataset: Any, parent_id: str,
                     done: set[str]) -> None:
    for entry in config.sweep.direct_eval:
        mask_set = summary.open(entry.labeler)
        key = f"direct:{entry.labeler}:{mask_set.manifest.fingerprint}"
        if key not in done:
            plan = next(p for p in summary.plans if p.spec.key == entry.labeler)
            log_direct_eval(entry, mask_set, dataset.split("test"), config, parent_id, key,
                            random_weights=made_on_random_weights(plan, summary.plans))


def log_trials(config: StudyConfig, results: list[Any], trials: list[dict], parent_id: str,
               done: set[str]) -> list[str]:
    """Log every finished trial not logged yet; returns the failures, one line each."""
    import json

    by_key = {trial["key"]: trial for trial in trials}
    study = config.model_dump(mode="json")
    failures = []
    for result in results:
        if result.error is not None or "outcome_path" not in (result.metrics or {}):
            lines = [line for line in str(result.error or "no result").splitlines() if line.strip()]
            failures.append(f"{Path(result.path).name}: {lines[-1]}")
            continue
        trial = by_key.get(result.metrics["trial_key"])
        key = f"trial:{result.metrics['trial_key']}"
        if trial is None or key in done:
            continue
        trial_study = trial_config(study, trial["overrides"])
        outcome = TrainingOutcome(**json.loads(storage.read_text(result.metrics["outcome_path"])))
        tags = {KEY_TAG: key, "method": method_of(trial_study), "labels": str(trial_study.train.labels
                if isinstance(trial_study.train.labels, str) else "schedule"),
                "table": trial["table"], "paper_row": trial["paper_row"]}
        log_training(trial_study, outcome, parent_id, {k: str(v) for k, v in tags.items() if v},
                     name=trial["name"])
    return failures


def checked_trials(config: StudyConfig, cpus: int, gpus: int) -> list[dict[str, Any]]:
    """Every trial of the sweep, each checked to fit the cluster and to be a valid config."""
    concurrency(config, cpus, gpus)  # a trial that cannot fit fails here, before any work
    trials = expand_trials(config)
    study = config.model_dump(mode="json")
    for trial in trials:
        trial_config(study, trial["overrides"], trial["name"])  # every trial is valid before any work
    return trials


def make_mask_sets(config: StudyConfig, dataset: Any, checkpoint: str | None, parent_id: str,
                   done: set[str]) -> None:
    """Generate the mask sets (each resumed where it stopped), log them and their direct
    evaluations."""
    if not config.labelers:
        return
    summary = generate_masks(config, dataset, labeler_context(config, checkpoint))
    logging.getLogger(__name__).info("%s", summary.format())
    log_mask_sets(config, summary, dataset.split("trainval", "test"), parent_id, done)
    if dataset.has_truth:  # a direct evaluation scores masks as predictions: needs truth
        log_direct_evals(config, summary, dataset, parent_id, done)
    elif config.sweep.direct_eval:
        print("no ground truth: the direct evaluations (masks scored as predictions) are skipped",
              file=sys.stderr)


def log_outcome(config: StudyConfig, results: list[Any], trials: list[dict], experiment_id: str,
                parent_id: str, done: set[str], extra: dict[str, Any]) -> dict[str, Any]:
    """Log the trials' runs, the best model's alias and the summary on the parent run."""
    failures = log_trials(config, results, trials, parent_id, done)
    best = (set_best_alias(experiment_id, parent_id, config.tracking.registered_name())
            if config.tracking.register_model else None)
    rows = summary_rows(experiment_id, parent_id)
    log_summary(parent_id, rows, {**extra, "failures": failures, "best_model": best})
    return {"rows": rows, "markdown": to_markdown(rows), "console": console_table(rows),
            "failures": failures, "best_model": best}


def run_sweep(config: StudyConfig) -> dict[str, Any]:
    """Run every stage of the study that is not done yet; returns the summary rows and the
    seconds each stage took (also metrics of the parent run)."""
    import mlflow

    clock = StageClock()
    config = config.resolved()  # trials and workers run elsewhere: hand them absolute paths
    with clock.stage("start"):
        ensure_ray()
        cpus, gpus = cluster_resources()
        trials = checked_trials(config, cpus, gpus)
    with clock.stage("data"):
        dataset = prepare_dataset(config.data)
        console.say(describe_data(dataset))
        trials, skipped = runnable_trials(trials, config.model_dump(mode="json"), dataset)
        fingerprint = sweep_fingerprint(config, dataset)
    with clock.stage("start"):  # the parent run (found again on a rerun) counts as getting going
        experiment_id = tracking.configure(config.tracking)
        parent_id = start_parent(config, fingerprint, experiment_id, trials)
        done = logged_keys(experiment_id, parent_id)
    with clock.stage("classifier"):
        checkpoint = resolve_classifier(config, parent_run_id=parent_id)
    with clock.stage("mask sets"):
        make_mask_sets(config, dataset, checkpoint, parent_id, done)
    with clock.stage("trials"):
        import_reviews(config, dataset)
        results, overheads = run_tune(config, fingerprint, trials, cpus, gpus)
    with clock.stage("logging"):
        outcome = log_outcome(config, results, trials, experiment_id, parent_id, done,
                              {"fingerprint": fingerprint, "classifier": checkpoint,
                               "trials": len(trials), "skipped_trials": skipped,
                               "trial_overhead_seconds": overheads})
    seconds = clock.totals()
    log_stage_seconds(parent_id, seconds, overheads)
    mlflow.MlflowClient().set_terminated(parent_id, "FAILED" if outcome["failures"] else "FINISHED")
    return {**outcome, "parent_run_id": parent_id, "experiment": config.tracking.experiment,
            "scored": dataset.has_truth, "stage_seconds": seconds, "trial_overheads": overheads}
