"""The user docs: a short README, no notes about how the work was done (commit hashes, issue
numbers, times of day), no reference to files outside the repository, and no broken link."""
import os
import re
import shlex

import pytest

import config
import train_inputs
from tests.conftest import REPO

README_MAX_LINES = 250
SKIPPED_DIRS = {".git", ".venv", "outputs", "runs", "wheels", "build", "__pycache__", ".pytest_cache",
                "synthetic", "widerface"}  # the last two: git-ignored data sets under data/

# What a user doc must not contain, with the reason shown when it does.
FORBIDDEN = {
    "commit hash": re.compile(r"(?<!-)\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"),
    "issue number": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "time of day": re.compile(r"(?<![\d:.])(?:[01]?\d|2[0-3]):[0-5]\d(?![\d:])"),
    "the internal specification (use docs/METHOD.md)": re.compile(r"\bSPEC\b"),
    "a folder outside the repository": re.compile(r"\.\./shared\b"),
}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files():
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found += [os.path.join(folder, name) for name in files if name.endswith(".md")]
    return sorted(found)


def forbidden_in(text):
    """``(line number, reason, match)`` of every forbidden pattern in ``text``."""
    return [(number, reason, match.group(0))
            for number, line in enumerate(text.splitlines(), 1)
            for reason, pattern in FORBIDDEN.items() for match in pattern.finditer(line)]


def anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    with open(path) as handle:
        text = re.sub(r"```.*?```", "", handle.read(), flags=re.DOTALL)
    return {anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def broken_links(path):
    """Relative links of the Markdown file ``path`` whose file (or heading) does not exist."""
    with open(path) as handle:
        text = re.sub(r"```.*?```", "", handle.read(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(linked):
            broken.append(f"{target} (no such file)")
        elif fragment and linked.endswith(".md") and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    return broken


def test_readme_is_short_and_has_a_table_of_contents():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details to docs/"
    assert "## Contents" in lines


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_docs_hold_no_work_notes_nor_references_outside_the_repository(path):
    with open(path) as handle:
        assert forbidden_in(handle.read()) == []


@pytest.mark.parametrize("path", [str(REPO / "README.md")] + sorted(str(p) for p in (REPO / "docs").glob("*.md")),
                         ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_points_to_an_existing_file_and_heading(path):
    assert broken_links(path) == []


def shell_commands(markdown, section):
    """The commands of the bash blocks of ``section`` (a heading) of ``markdown``, continuation
    lines joined, comments dropped."""
    body = markdown[markdown.index(section):]
    body = body[:body.find("\n## ", 1) if "\n## " in body[1:] else len(body)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL):
        commands += [line.split(" #")[0].strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return commands


def test_the_documented_synthetic_distillation_is_the_one_train_py_suggests():
    text = (REPO / "docs" / "SYNTHETIC.md").read_text()
    commands = [shlex.split(c) for c in shell_commands(text, "## Distilling by hand")]
    assert shlex.split(train_inputs.synthetic_distillation_command()) in commands
    assert ["python", "-m", "data.synthetic"] in commands


def test_the_documented_ablation_rows_are_the_ones_bench_ablation_runs():
    text = (REPO / "docs" / "SYNTHETIC.md").read_text()
    documented = {}
    for line in text[text.index("| row | `--rows` name | `--set` |"):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        label, name, settings = [cell.strip() for cell in line.strip("|").split(" | ")]
        documented[name.strip("`")] = (label, None if name == "`control`" else settings.strip("`").split())
    assert documented == {name: (label, overrides) for name, (label, overrides) in config.ABLATION["rows"].items()}


def test_the_checks_catch_what_they_are_for(tmp_path):
    notes = ("fresh clone (1469aa3) printed this table\n"
             "HEAD 2b5ccde62f0c copied to /tmp\n"
             "15:20–16:50 UTC, 27 runs\n"
             "Verdict on issue 9's goals; see Issue #12\n"
             "as the public code does (SPEC §7), see ../shared/notes\n")
    reasons = [reason for _, reason, _ in forbidden_in(notes)]
    assert reasons.count("commit hash") == 2 and reasons.count("time of day") == 2
    assert reasons.count("issue number") == 2 and reasons.count("a folder outside the repository") == 1
    assert reasons.count("the internal specification (use docs/METHOD.md)") == 1
    fine = ("sha256 `23baa9c40e5214a6345fb7f7598df9bd0479ca091a02c028c3ed474a7180813a`, 0.736 GMACs,\n"
            "label.txt:3: found 3 fields, 1e-5, 640x480, lr 1e-3, ratio 1:7, test_spec_constants\n")
    assert forbidden_in(fine) == []

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# A\n## The three steps\n```\n# not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/A.md) [ok](docs/A.md#the-three-steps) [web](https://example.org/x)\n"
                    "[gone](docs/B.md) [no heading](docs/A.md#not-a-heading) [own](#top)\n# Top\n")
    assert broken_links(str(page)) == ["docs/B.md (no such file)", "docs/A.md#not-a-heading (no such heading)"]


def test_github_heading_anchors():
    assert anchor("Ablation: `bench/ablation.py`") == "ablation-benchablationpy"
    assert anchor("5. TDKD distillation") == "5-tdkd-distillation"
    assert anchor("test_widerface.py") == "test_widerfacepy"
    assert anchor("Train, evaluate, learn more") == "train-evaluate-learn-more"
