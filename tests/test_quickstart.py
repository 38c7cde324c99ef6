"""The quickstart's shipped teacher, its flags and cached evaluations, and bench/ablation.py's
table and run folders (issue 9)."""
import json
import subprocess
import sys

import pytest

import config
import quickstart
from bench import ablation
from tests.conftest import REPO, shipped_file
from utils.checkpoint import read_state_dict

TEACHER_SHA256 = {
    "pth": "b7fe3653556de12b47e3c08294d35f143ebee5bd64ec12d55f98182d2fc6d33b",
    "json": "e6d99d72ce8e44989d3855afb1d3f00ec2ba58868c92cce890f53f87df5df9ad",
}


def test_shipped_teacher_is_the_recorded_file_and_described():
    weights = shipped_file(*config.QUICKSTART["teacher_weights"].split("/"))
    for suffix, digest in TEACHER_SHA256.items():
        assert quickstart.sha256(weights.with_suffix(f".{suffix}")) == digest
    assert json.loads(weights.with_suffix(".json").read_text())["network"] == config.QUICKSTART["teacher_network"]
    assert weights.stat().st_size < 20e6
    assert any("ClassHead.0.conv_dw_3x3" in key for key in read_state_dict(weights))  # task heads: a teacher


def test_teacher_flags_exclude_each_other():
    assert quickstart.parse_args([]).teacher_weights is None
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--train_teacher", "--teacher_weights", "t.pth"])
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--make_teacher", "--train_teacher"])


def test_evaluation_is_reused_only_for_the_same_weights_file(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    folder = tmp_path / "run"
    folder.mkdir()
    aps = dict(easy=0.5, medium=0.25, hard=0.125)
    (folder / "aps.json").write_text(json.dumps(dict(sha256=quickstart.sha256(weights), aps=aps)))
    assert quickstart.test_and_evaluate(weights, tmp_path, folder, "row") == aps
    assert "row: easy 50.00, medium 25.00, hard 12.50 (reused)" in capsys.readouterr().out
    weights.write_bytes(b"other weights")  # a changed file is tested again (and fails here: no model)
    with pytest.raises(SystemExit):
        quickstart.test_and_evaluate(weights, tmp_path, folder, "row")


def test_missing_teacher_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "bench/ablation.py", "--report", "--out", str(tmp_path),
                             "--teacher_weights", str(tmp_path / "none.pth")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "none.pth: no such teacher" in result.stderr


def test_ablation_rows_are_distiller_settings():
    rows = config.ABLATION["rows"]
    assert rows["control"][1] is None and rows["tdkd"][1] == []
    for row, (_, overrides) in rows.items():
        if overrides is not None:
            cfg = config.training_config("distillation", "mobile0.25")
            config.apply_overrides(cfg, config.QUICKSTART["distillation"]["set"] + overrides)
            active = {k for k, v in cfg["loss_weights"].items() if v} - {"loc", "conf", "landm"}
            assert active, row
    assert set(rows) == {"control", "tdkd", "cls", "reg", "features", "coupled", "probability", "hinton", "fitnet"}


def test_ablation_reuses_the_quickstart_runs_of_its_student_seed(tmp_path):
    seed = config.ABLATION["student_seed"]
    assert ablation.run_folder(tmp_path, "control", seed, False) == tmp_path / f"seed{seed}" / "student_more"
    assert ablation.run_folder(tmp_path, "tdkd", seed, True) == tmp_path / f"seed{seed}" / "tdkd"
    assert ablation.run_folder(tmp_path, "tdkd", seed, False) == tmp_path / "ablation" / "tdkd" / f"seed{seed}"
    assert ablation.run_folder(tmp_path, "cls", seed + 1, True) == tmp_path / "ablation" / "cls" / f"seed{seed + 1}"


def test_ablation_table_mean_std_and_differences_by_hand():
    ap = lambda e, m, h: dict(easy=e, medium=m, hard=h)  # noqa: E731
    results = {"control": {0: ap(0.90, 0.80, 0.70), 1: ap(0.92, 0.82, 0.72)},
               "tdkd": {0: ap(0.91, 0.80, 0.75)}}
    table = ablation.markdown_table(results, [0, 1])
    assert "| control: same epochs, no teacher | 2 | 91.00 ± 1.00 | 81.00 ± 1.00 | 71.00 ± 1.00 |" in table
    assert "| full TDKD (task features + probability) | 1 | 91.00 ± 0.00 | 80.00 ± 0.00 | 75.00 ± 0.00 |" in table
    assert "* full TDKD (task features + probability): seed 0: +1.00 / +0.00 / +5.00" in table
