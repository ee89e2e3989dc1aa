"""jobs/benchmark.py end to end on a tiny synthetic set: JSON, the table, one MLflow run.

Ratios are reported, never asserted: only that each requested stage produced them.
"""

import json
import math
import re
from pathlib import Path

import pytest

from wsss.benchmark import scaling
from wsss.benchmark.memory import MB, MemorySampler
from wsss.benchmark.report import format_table, pipeline_table, scaling_text, write_json
from wsss.benchmark.run import STAGES, selected_stages
from wsss.benchmark.scaling import WARM_UP_IMAGES, flatness
from wsss.cli.benchmark import main

IN_PROCESS = ["decode", "cam", "gradcam", "gradcampp", "grabcut", "slic", "mix", "sam2", "train", "infer", "import"]


def strict_json(path):
    """The file parsed as strict JSON (NaN or Infinity would raise)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def assert_stage_rows(payload, stages):
    rows = {row["stage"]: row for row in payload["stages"]}
    assert list(rows) == stages
    for stage, row in rows.items():
        assert "error" not in row, (stage, row.get("error"))
        assert row["path_images_per_s"] > 0 and row["reference_images_per_s"] > 0, stage
        assert math.isclose(row["ratio"], row["path_images_per_s"] / row["reference_images_per_s"])


def test_stage_selection_and_refusals(capsys):
    assert selected_stages([], ray=True) == list(STAGES)
    assert "pseudo" not in selected_stages([], ray=False)
    assert selected_stages(["mix", "decode"], ray=True) == ["decode", "mix"]  # canonical order
    with pytest.raises(ValueError, match="known: decode"):
        selected_stages(["gradcut"], ray=True)
    assert main(["pseudo", "--no-ray"]) == 2
    assert "need Ray" in capsys.readouterr().err
    assert main(["grabcut", "--rounds", "0"]) == 2
    assert "--rounds must be at least 1 (got 0)" in capsys.readouterr().err


def test_report_is_strict_json_and_a_markdown_table(tmp_path):
    row = {"stage": "grabcut", "path": "p", "reference": "r", "unit": "per core", "images": 4,
           "path_images_per_s": 8.0, "reference_images_per_s": 4.0, "ratio": 2.0,
           "path_images_per_s_per_worker": 4.0, "workers": 2, "scaling": float("nan"),
           "floor_images_per_s": None, "details": {}}
    payload = {"machine": {"cpu": "x", "cores": 2, "gpu": None, "versions": {"torch": "t", "ray": "r"}},
               "settings": {"size": 64}, "images": 4, "stages": [row, {"stage": "sam2", "error": "boom"}],
               "fast_paths": [{"fast_path": "crop", "predicted_gain": 1.1, "measured_gain": 1.0,
                               "prediction": "why", "kept": True, "dice_delta": 0.0}]}
    data = strict_json(write_json(payload, tmp_path / "out.json"))
    assert data["stages"][0]["scaling"] is None  # NaN written as null
    table = format_table(payload).splitlines()
    assert table[2].startswith("| stage | path | reference | images/s path | images/s reference | ratio")
    assert "| grabcut | p | r | 8.0 (4.0/core) | 4.0 | 2.00 | 2 | - |" in table
    assert any(line.startswith("| sam2 | error: boom") for line in table)
    assert any(line.startswith("| crop | 1.10x | 1.00x | True |") for line in table)


def test_quick_run_in_process_writes_json_and_one_mlflow_run(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "bench.json", f"sqlite:///{tmp_path}/mlflow.db"
    code = main([*IN_PROCESS, "--quick", "--no-ray", "--device", "cpu", "--out", str(out),
                 "--tracking-uri", store, "--scratch", str(tmp_path / "scratch")])
    assert code == 0
    payload = strict_json(out)
    assert_stage_rows(payload, IN_PROCESS)
    assert payload["machine"]["cores"] >= 1 and payload["machine"]["versions"]["torch"]
    kinds = {item["fast_path"] for item in payload["fast_paths"]}
    assert {"GrabCut on box + margin crop vs whole image",
            "three CAM kinds in one pass vs three single-kind passes"} <= kinds
    cams = {row["stage"]: row["details"] for row in payload["stages"] if row["stage"].startswith(("cam", "grad"))}
    assert all(d["max_abs_diff_vs_pytorch_grad_cam"] < 1e-4 for d in cams.values())
    review = next(row for row in payload["stages"] if row["stage"] == "import")["details"]
    assert review["imported"] == review["tasks"] > 0 and review["problems"] == 0
    printed = capsys.readouterr().out
    assert "| stage | path | reference |" in printed and "| grabcut |" in printed

    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.stage = 'benchmark'")
    assert len(runs) == 1 and runs[0].info.run_id == payload["mlflow_run_id"]
    metrics = runs[0].data.metrics
    assert all(f"{stage}_ratio" in metrics for stage in IN_PROCESS)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"bench.json", "benchmark.md"} <= artifacts

    # --show prints the saved run's tables again, as docs/performance.md does
    assert main(["--show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert format_table(payload) in shown and "--quick" in shown
    (tmp_path / "junk.json").write_text("{}")
    assert main(["--show", str(tmp_path / "junk.json")]) == 2
    assert "junk.json: not a benchmark result" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_through_ray_reports_scaling(ray_local, tmp_path):
    out = tmp_path / "bench.json"
    stages = ["decode", "grabcut", "pseudo"]
    assert main([*stages, "--quick", "--workers", "2", "--device", "cpu", "--out", str(out),
                 "--no-mlflow", "--scratch", str(tmp_path / "scratch")]) == 0
    payload = strict_json(out)
    assert_stage_rows(payload, stages)
    for row in payload["stages"]:
        assert row["workers"] == 2 and row["scaling"] > 0, row["stage"]
    grabcut = payload["stages"][1]["details"]
    assert set(grabcut["ray"]) == {"1", "2"} and grabcut["pipeline_over_bare"] > 0
    assert grabcut["machine_scaling"] > 0 and grabcut["pipeline_over_parallel_bare"] > 0  # no scheduler
    both = grabcut["ray"]["2"]  # where the cores went: the workers did the stage's work
    assert set(both["cpu_seconds"]) == {"driver", "workers", "ray_system"}
    assert both["cpu_seconds"]["workers"] >= 0.5 * both["busy_seconds"] > 0
    assert all(value >= 0 for value in both["cpu_seconds"].values()) and both["idle_core_seconds"] >= 0
    # interleaved rounds: each run covers all the rows in each round, a rate per round, summed
    assert grabcut["rounds"] == 2 and both["images"] == grabcut["ray"]["1"]["images"] == 2 * 8
    assert len(both["rounds_images_per_s"]) == 2 and all(r > 0 for r in both["rounds_images_per_s"])
    assert min(both["rounds_images_per_s"]) <= both["images_per_s"] <= max(both["rounds_images_per_s"])
    line = next(row for row in pipeline_table(payload).splitlines() if row.startswith("| grabcut |"))
    shares = [int(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split(" | ")[-1].rstrip(" |").split(", ")]
    assert len(shares) == 5 and 97 <= sum(shares) <= 103  # stage, Ray in workers, driver, system, idle
    by_round = line.split(" | ")[6]  # "scaling (round 1, round 2)"
    assert re.fullmatch(r"\d+\.\d\d \(\d+\.\d\d, \d+\.\d\d\)", by_round), by_round
    pseudo = payload["stages"][2]["details"]["runs"]
    assert pseudo["2"]["images"] == payload["images"]


def scaling_row(stage, images, ms_per_image, private_growth_mb, rss_growth_mb=0.0):
    return {"stage": stage, "images": images, "size": 32, "seconds": ms_per_image * images / 1000,
            "ms_per_image": ms_per_image, "driver_peak_mb": 700 + rss_growth_mb,
            "driver_growth_mb": rss_growth_mb, "driver_private_peak_mb": 500 + private_growth_mb,
            "driver_private_growth_mb": private_growth_mb, "workers_peak_mb": 900.0, "spilled_mb": None,
            "store_mb": images / 100}


def test_scaling_flatness_and_table():
    # the verdict reads the driver's own memory; RSS (object-store pages) is shown beside it
    rows = [scaling_row("pseudo", 1000, 20.0, 5.0), scaling_row("pseudo", 16000, 21.0, 6.0, 300.0),
            scaling_row("train", 1000, 10.0, 10.0), scaling_row("train", 4000, 30.0, 200.0)]
    verdicts = flatness(rows)
    assert verdicts["pseudo"]["cost_flat"] and verdicts["pseudo"]["driver_flat"]
    assert math.isclose(verdicts["pseudo"]["ms_per_image_ratio"], 21 / 20)
    assert not verdicts["train"]["cost_flat"] and not verdicts["train"]["driver_flat"]
    assert math.isclose(verdicts["train"]["driver_growth_kb_per_extra_image"], 1024 * 190 / 3000)
    payload = {"size": 32, "source_size": 128, "labelers": ["cam"], "train_model": {}, "rows": rows,
               "flatness": verdicts}
    text = scaling_text(payload)
    assert "| pseudo | 16000 | 336.0 | 21.00 | 506 (+6) | 1000 (+300) | 900 | unknown | 160.0 |" in text
    assert math.isclose(verdicts["pseudo"]["driver_rss_growth_kb_per_extra_image"], 1024 * 300 / 15000)
    assert "| train | 1000 -> 4000 | 3.00 |" in text and "cost GROWS, driver GROWS" in text


def test_memory_sampler_catches_a_short_lived_allocation():
    # the driver is read often enough (tens of times a second) that a transient the size of a
    # loaded checkpoint is caught on every run, so a flat stage is not reported as growing
    # because one run's samples happened to land on it
    import mmap
    import time

    import numpy as np

    with MemorySampler() as peaks:
        started = time.monotonic()
        # fresh pages from the kernel: a heap block could reuse memory an earlier test freed
        # and the allocator kept resident, and then no sampler could see it grow
        block = mmap.mmap(-1, 64 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        np.frombuffer(block, dtype=np.uint8)[:] = 1  # written, so every page is resident
        while peaks.private_peak - peaks.private_start < 48 * MB and time.monotonic() - started < 5:
            time.sleep(0.005)
        held = time.monotonic() - started
        block.close()
        time.sleep(0.3)
    assert peaks.private_peak - peaks.private_start >= 48 * MB
    assert peaks.samples >= 10 * (held + 0.3)  # >= 10 reads a second (the old 0.2-s sampler: 5)


def test_scaling_refuses_bad_counts(capsys):
    assert main(["--scaling", "100,x"]) == 2
    assert "--scaling takes image counts" in capsys.readouterr().err
    assert main(["decode", "--scaling", "100"]) == 2
    assert main(["--scaling", "100", "--scaling-train", "1"]) == 2


@pytest.mark.slow
def test_scaling_run_records_cost_and_memory_per_count(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WSSS_LOG_DIR", str(tmp_path / "logs"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    swept = []

    def whole_sweep(config):
        """Stands in for ``run_sweep`` (run whole by the sweep tests; here its ~2 minutes of
        trial start-ups would only be counted again): the row's plumbing gets a real study
        config and an outcome shaped like run_sweep's, with files in the sweep's storage."""
        swept.append(config)
        (Path(config.sweep.storage) / "trial").mkdir(parents=True)
        (Path(config.sweep.storage) / "trial" / "state.pt").write_bytes(b"x" * 4096)
        return {"rows": [{"stage": "train"}] * len(config.sweep.trials), "failures": []}

    monkeypatch.setattr(scaling, "run_sweep", whole_sweep)
    assert main(["--scaling", "16,24", "--scaling-size", "32", "--scaling-sweep", "24", "--workers", "2",
                 "--device", "cpu", "--no-mlflow", "--no-warm-up", "--out", str(out), "--scratch", str(cache)]) == 0
    payload = strict_json(out / "scaling.json")
    assert payload["warm_up"] is False
    rows = {(row["stage"], row["images"]): row for row in payload["rows"]}
    assert list(rows) == [("pseudo", 16), ("pseudo", 24), ("train", 16), ("train", 24), ("sweep", 24)]
    for key, row in rows.items():
        assert row["seconds"] > 0 and row["ms_per_image"] > 0, key
        assert row["driver_peak_mb"] > 0 and row["driver_growth_mb"] >= 0, key
        assert 0 < row["driver_private_peak_mb"] <= row["driver_peak_mb"], key
        assert row["workers_peak_mb"] > 0 and row["worker_max_peak_mb"] > 0, key
        assert row["spill"] == "unknown" or row["spilled_mb"] >= 0, key
    pseudo = rows[("pseudo", 16)], rows[("pseudo", 24)]
    assert [row["masks_written"] for row in pseudo] == [16 * 8, 24 * 8]  # every set, every image
    assert 0 < pseudo[0]["store_mb"] < pseudo[1]["store_mb"]
    assert all(row["epoch_ms_per_train_image"] > 0 for key, row in rows.items() if key[0] == "train")
    sweep = rows[("sweep", 24)]  # the sweep row, around the stand-in
    assert sweep["trials"] == 3 and sweep["failures"] == 0 and sweep["store_mb"] > 0
    assert len(swept) == 1 and swept[0].data.root.endswith("pets-24-128px-seed0")
    assert {spec.name for spec in swept[0].labelers} == {"cam", "grabcut"}  # the benchmark's study
    assert set(payload["flatness"]) == {"pseudo", "train"}  # one sweep count: no verdict
    assert all(flat["ms_per_image_ratio"] > 0 for flat in payload["flatness"].values())
    assert "| pseudo | 24 |" in (out / "scaling.md").read_text()
    printed = capsys.readouterr()
    assert "| stage | images | seconds | ms/image |" in printed.out
    assert "scaling: pseudo     24 images" in printed.err  # one line per run
    assert (cache / "pets-24-128px-seed0" / "annotations" / "trainval.txt").is_file()  # kept for reruns
    assert not (cache / f"pets-{WARM_UP_IMAGES}-128px-seed0").exists()  # no warm-up set: nothing ran twice
    assert not list(cache.glob("wsss-scaling-*"))  # measured runs' stores removed

    assert main(["--show", str(out / "scaling.json")]) == 0
    assert "| pseudo | 16 -> 24 |" in capsys.readouterr().out


@pytest.mark.slow
def test_training_row_sets_each_trainer_against_plain_pytorch(ray_local, tmp_path):
    """The train stage through Ray: one worker in the trial's process and in Ray Train, each
    against one plain process; DDP on 2 workers against 2 plain processes at once; and the
    seconds a sweep trial costs beyond its epochs and test, for both trainers."""
    from wsss.benchmark.report import training_table

    out = tmp_path / "bench.json"
    assert main(["train", "--quick", "--workers", "2", "--device", "cpu", "--out", str(out),
                 "--no-mlflow", "--scratch", str(tmp_path / "scratch")]) == 0
    payload = strict_json(out)
    (row,) = payload["stages"]
    assert "error" not in row, row.get("error")
    details = row["details"]
    plain = row["reference_images_per_s"]
    assert set(details["one_worker"]) == {"auto", "ray_train"}
    for one in details["one_worker"].values():
        assert one["images_per_s"] > 0 and one["over_plain"] == pytest.approx(one["images_per_s"] / plain)
    assert row["path_images_per_s"] == details["one_worker"]["auto"]["images_per_s"]
    ddp = details["ddp"]
    assert ddp["workers"] == 2 and ddp["plain_processes_images_per_s"] > 0 and ddp["images_per_s"] > 0
    overhead = details["trial_overhead_seconds"]
    assert set(overhead) == {"auto", "ray_train"} and all(seconds > 0 for seconds in overhead.values())
    table = training_table(payload)
    assert "| 1 worker in the trial's process (trainer: auto) |" in table
    assert "| 2 workers in Ray Train (DDP) |" in table
    assert f"| {overhead['ray_train']:.1f} | 3 |" in table
