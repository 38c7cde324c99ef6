"""Every command of a ``bash`` block in README.md and docs/*.md runs as written (small), or is
marked as needing WIDER FACE, a GPU or the network, and then stops with one line saying what
is missing and how to get it (tests/doc_commands.py has the markers)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from data.synthetic import generate_synthetic_widerface
from tests import doc_commands
from tests.conftest import REPO, shipped_file
from tests.test_reliability import one_error_line

RUN_KINDS = ("run", "run on quickstart outputs")
BLOCKS = [block for doc in doc_commands.DOCS for block in doc_commands.blocks(doc)]
QUICKSTART = "outputs/quickstart"
# The line docs/DISTILLATION.md once held: --predictions missing, so argparse refused --recall.
OLD_FALSE_POSITIVES = ["python bench/false_positives.py --gt $Q/data/val/ground_truth --recall 0.8 0.9 "
                       "$Q/seed1/student_more/predictions $Q/seed1/tdkd/predictions"]


def marker_of(where, marker):
    assert marker is not None, f"{where}: bash block without a '<!-- test: KIND -->' line before it"
    try:
        return doc_commands.parse_marker(marker)
    except ValueError as exc:
        pytest.fail(f"{where}: {exc}")


def valid(marker):
    try:
        doc_commands.parse_marker(marker)
        return True
    except ValueError:
        return False


def is_run_here(kind):
    return kind in RUN_KINDS + ("needs widerface",) or (kind == "needs gpu" and not torch.cuda.is_available())


def quickstart_stand_ins(sandbox, data):
    """What ``make quickstart`` leaves that the docs read: its data set, the seeds' runs (the shipped
    synthetic student as their weights) and their predictions (made by the first job returned)."""
    quick = sandbox / QUICKSTART
    shutil.copytree(data, quick / "data")
    student = shipped_file("weights", "synthetic_student_mobile0.25.pth")
    runs = [f"seed{s}/{arm}" for s in range(3) for arm in ("student_more", "tdkd")] + ["ablation/relative/seed1"]
    for run in runs:
        (quick / run).mkdir(parents=True)
        shutil.copy(student, quick / run / "mobile0.25_Final.pth")
    first = f"{QUICKSTART}/{runs[0]}/predictions"
    predict = ["test_widerface.py", "-m", str(student), "--dataset_folder", f"{QUICKSTART}/data/val/images/",
               "--origin_size", "--save_folder", first]
    copies = " && ".join(f"cp -r {first} {QUICKSTART}/{run}/" for run in runs[1:])
    return [dict(argv=predict), dict(shell=copies)]


def photos(sandbox, images):
    """The photos the docs name: photo.jpg, path/to/photo.jpg, and photos/ with a subfolder."""
    for name, image in zip(("photo.jpg", "path/to/photo.jpg", "photos/a.jpg", "photos/more/b.jpg"), images):
        (sandbox / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, sandbox / name)


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory):
    """Run every block that runs here, each doc in its own sandbox, in one runner process:
    ``{doc:line: [(command, exit status, output)]}``."""
    root = tmp_path_factory.mktemp("docs")
    data = root / "quickstart_data"
    generate_synthetic_widerface(data, num_train=4, num_val=4, image_size=(160, 240), workers=1)
    images = sorted((data / "val" / "images").rglob("*.jpg"))
    jobs, owners = [], []
    for doc in doc_commands.DOCS:
        doc_blocks = [(where, marker, cmds) for where, marker, cmds in BLOCKS if where.startswith(doc + ":")]
        sandbox = doc_commands.make_sandbox(root / doc.replace("/", "_"))
        photos(sandbox, images)
        parsed = [(where, doc_commands.parse_marker(marker), cmds) for where, marker, cmds in doc_blocks
                  if marker is not None and valid(marker)]
        if any(kind == "run on quickstart outputs" for _, (kind, _, _), _ in parsed):
            setup = quickstart_stand_ins(sandbox, data)
            jobs += [dict(job, cwd=str(sandbox)) for job in setup]
            owners += [("setup", None)] * len(setup)
            if doc == "docs/DISTILLATION.md":
                parsed.append(("old false_positives line", ("run", {}, None), OLD_FALSE_POSITIVES))
        variables = {}
        for where, (kind, extra, _), cmds in parsed:
            if not is_run_here(kind):
                continue
            for argv in doc_commands.argv_of(cmds, extra if kind in RUN_KINDS else None, variables):
                jobs.append(dict(shell=argv) if isinstance(argv, str) else dict(argv=argv))
                jobs[-1]["cwd"] = str(sandbox)
                owners.append((where, argv))
    for number, job in enumerate(jobs):
        job["output"] = str(root / f"output_{number}.txt")
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, TDKD_CACHE=str(root / "cache"), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    subprocess.run([sys.executable, str(REPO / "tests" / "doc_commands.py"), str(root / "jobs.json"),
                    str(root / "statuses.json")], check=True, env=env, cwd=str(root), timeout=900)
    statuses = json.loads((root / "statuses.json").read_text())
    results = {}
    for (where, argv), status, job in zip(owners, statuses, jobs):
        output = open(job["output"]).read()
        assert where != "setup" or status == 0, f"setting up the quickstart stand-ins failed:\n{output}"
        results.setdefault(where, []).append((argv, status, output))
    return results


def shown(argv):
    return argv if isinstance(argv, str) else "python " + " ".join(argv)


@pytest.mark.parametrize("where, marker, cmds", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_every_documented_command_runs_or_says_what_it_needs(where, marker, cmds, doc_runs):
    kind, extra, path = marker_of(where, marker)
    assert cmds, f"{where}: empty bash block"
    if kind == "elsewhere":
        assert (REPO / path).exists(), f"{where}: 'elsewhere {path}': no such file"
        return
    if kind == "needs network":
        return
    if not is_run_here(kind):
        pytest.skip(f"{where}: {kind}, and one is present")
    programs = {argv[1] if argv[0] == "-m" else argv[0] for argv in doc_commands.argv_of(cmds) if isinstance(argv, list)}
    assert set(extra) <= programs, f"{where}: 'small:' names {sorted(set(extra) - programs)}, not in the block"
    for argv, status, output in doc_runs[where]:
        if kind in RUN_KINDS:
            assert status == 0, f"{where}: `{shown(argv)}` exited {status}:\n{output[-3000:]}"
        else:
            assert status == 2, f"{where}: `{shown(argv)}` exited {status}, not 2 (one error line):\n{output[-3000:]}"
            one_error_line(output)
            error = output[output.index("error:"):]
            needed = ("wider face",) if kind == "needs widerface" else ("cuda", "gpu")
            assert any(word in error.lower() for word in needed), f"{where}: `{shown(argv)}` does not say it needs {kind[6:]}: {error}"
            assert any(how in error for how in ("docs/", "data.synthetic", "--device cpu")), \
                f"{where}: `{shown(argv)}` does not say how to get what it needs: {error}"


def test_the_doc_checks_catch_what_they_are_for(doc_runs, tmp_path, monkeypatch):
    (_, status, output), = doc_runs["old false_positives line"]
    assert status == 2 and "argument --recall: invalid float value" in output
    (tmp_path / "A.md").write_text("```bash\npython detect.py photo.jpg\n```\n"
                                   "<!-- test: run small: detect.py --vis_thres 0.9 -->\n\n```bash\nQ=out\n"
                                   "python -m data.synthetic --out $Q/{a,b}  # two\n```\n"
                                   "<!-- test: needs coffee -->\n```bash\nmake tea\n```\n")
    monkeypatch.setattr(doc_commands, "REPO", tmp_path)
    (_, no_marker, _), (_, marker, cmds), (_, unknown, _) = doc_commands.blocks("A.md")
    assert no_marker is None
    kind, extra, _ = doc_commands.parse_marker(marker)
    assert kind == "run" and extra == {"detect.py": ["--vis_thres", "0.9"]}
    assert doc_commands.argv_of(cmds, {"data.synthetic": ["--num_train", "2"]}) == \
        [["-m", "data.synthetic", "--out", "out/a", "out/b", "--num_train", "2"]]
    with pytest.raises(ValueError, match="unknown kind 'needs coffee'"):
        doc_commands.parse_marker(unknown)
    with pytest.raises(ValueError, match="'small:' is for the run kinds"):
        doc_commands.parse_marker("needs widerface small: train.py --max_iter 1")
    assert doc_commands.parse_marker("elsewhere tests/test_quickstart.py: minutes") == \
        ("elsewhere", {}, "tests/test_quickstart.py")
