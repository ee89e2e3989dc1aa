import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from badfiles import BAD_KINDS, ODD_KINDS, write_broken, write_odd_but_valid
from PIL import Image

from wsss.cli.main import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEM, main
from wsss.data.decode import read_trimap
from wsss.data.pets import index

WSSS = str(Path(sys.executable).with_name("wsss"))


def run_json(capsys, argv):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_data_check_clean_root(capsys, synthetic_root):
    code, report = run_json(capsys, ["data", "check", "--root", str(synthetic_root), "--json"])
    assert code == EXIT_OK
    assert set(report) >= {"splits", "breeds", "quarantine", "missing_trimaps", "missing_boxes"}
    assert sum(report["splits"].values()) == 74 and report["splits"]["val"] > 0
    assert len(report["breeds"]) == 37
    assert report["quarantine"] == [] and report["missing_trimaps"] == []


def _seed_bad_files(root: Path) -> dict[str, str]:
    """Replace some images with odd-but-valid and broken files; return broken id -> reason."""
    ids = [r.image_id for r in index(root).records]
    for image_id, kind in zip(ids, ODD_KINDS):
        write_odd_but_valid(root / "images" / f"{image_id}.jpg", kind)
        trimap = np.full((16, 24), 2, np.uint8) if kind != "exif_rotated" else np.full((24, 16), 2, np.uint8)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{image_id}.png")
    broken = {}
    for image_id, kind in zip(ids[len(ODD_KINDS):], sorted(BAD_KINDS)):
        write_broken(root / "images" / f"{image_id}.jpg", kind)
        broken[image_id] = BAD_KINDS[kind]
    return broken


def test_data_check_reports_each_bad_file(capsys, writable_root):
    broken = _seed_bad_files(writable_root)
    (writable_root / "annotations" / "trimaps" / f"{index(writable_root).records[-1].image_id}.png").unlink()
    code, report = run_json(capsys, ["data", "check", "--root", str(writable_root), "--json",
                                     "--error-budget", "0.1"])
    assert code == EXIT_OK  # 3 bad of 74 is within a 10% budget
    reasons = {entry["image_id"]: entry["reason"] for entry in report["quarantine"]}
    assert set(reasons) == set(broken)  # odd-but-valid files are not quarantined
    for image_id, fragment in broken.items():
        assert fragment in reasons[image_id]
    assert len(report["missing_trimaps"]) == 1
    code, report = run_json(capsys, ["data", "check", "--root", str(writable_root), "--json"])
    assert code == EXIT_PROBLEM and not report["usable"]  # over the default 1% budget
    assert "exceed the error budget" in report["problems"][0]


def test_data_check_missing_root_is_bad_input(capsys, tmp_path):
    assert main(["data", "check", "--root", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert "robots.ox.ac.uk" in capsys.readouterr().err


def _write_predictions(root: Path, out: Path, records, scale: int = 1) -> None:
    out.mkdir()
    for record in records:
        trimap = read_trimap(record.trimap_path)
        mask = (trimap == 1).astype(np.uint8) * scale
        Image.fromarray(mask).save(out / f"{record.image_id}.png")


def test_eval_scores_perfect_predictions(capsys, synthetic_root, tmp_path):
    records = index(synthetic_root).split("test")
    _write_predictions(synthetic_root, tmp_path / "pred", records, scale=255)
    code, result = run_json(capsys, ["eval", "--pred", str(tmp_path / "pred"), "--root",
                                     str(synthetic_root), "--json"])
    assert code == EXIT_OK and result["images"] == len(records)
    assert result["micro"]["dice"] == 1.0 and result["per_image"]["iou"] == 1.0
    assert result["border_policy"] == "ignore"
    code, result = run_json(capsys, ["eval", "--pred", str(tmp_path / "pred"), "--root",
                                     str(synthetic_root), "--json", "--border-policy", "foreground"])
    assert result["micro"]["recall"] < 1.0  # the border now counts as pet and was predicted 0


def test_eval_lists_missing_extra_and_wrong_sized(capsys, synthetic_root, tmp_path):
    records = index(synthetic_root).split("test")
    pred = tmp_path / "pred"
    _write_predictions(synthetic_root, pred, records, scale=1)
    (pred / f"{records[0].image_id}.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(pred / f"{records[1].image_id}.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(pred / "not_an_image_7.png")
    assert main(["eval", "--pred", str(pred), "--root", str(synthetic_root)]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert f"missing (1): {records[0].image_id}" in error
    assert "extra (1): not_an_image_7" in error
    assert f"wrong size (1): {records[1].image_id} (5x5, expected 64x64)" in error


def test_console_script_exit_codes(tmp_path):
    good = subprocess.run([WSSS, "config", "check", "jobs/configs/smoke.yaml"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[1])
    assert good.returncode == EXIT_OK, good.stderr
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("data: {image_size: 3}\n")
    bad = subprocess.run([WSSS, "config", "check", str(bad_config)], capture_output=True, text=True)
    assert bad.returncode == EXIT_BAD_INPUT and "data.image_size" in bad.stderr
    usage = subprocess.run([WSSS, "nonsense"], capture_output=True, text=True)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_data_synth_writes_a_checkable_root(capsys, tmp_path):
    assert main(["data", "synth", "--root", str(tmp_path / "s"), "--images", "111", "--size", "48"]) == 0
    capsys.readouterr()
    code, report = run_json(capsys, ["data", "check", "--root", str(tmp_path / "s"), "--json"])
    assert code == EXIT_OK and sum(report["splits"].values()) == 111
