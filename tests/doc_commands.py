"""The documented commands: the ``bash`` blocks of README.md and docs/*.md, the marker before
each (``<!-- test: KIND ... -->``) and a runner that runs them in a sandbox folder.

Kinds (tests/README.md explains them):

* ``run`` -- run in the suite, in order, each command exiting 0; ``run small: PROG ARGS; PROG
  ARGS`` appends ARGS to every command of the program PROG (``train.py``, ``bench/probe.py``,
  ``data.synthetic``: as the command names it), so that it runs in seconds (argparse keeps
  the last value of a flag).
* ``run on quickstart outputs`` -- the same, in a sandbox that holds stand-ins of what
  ``make quickstart`` writes (a small synthetic set, the shipped student as each run's weights,
  its predictions).
* ``needs widerface`` / ``needs gpu`` -- run as written (where no GPU is present): each command
  must stop with exit status 2 and one line ``error: ...`` saying what is missing and how to
  get it.
* ``needs network`` -- not run (it downloads).
* ``elsewhere PATH: why`` -- run by another part of the suite; PATH must exist.

Run as a script (``python tests/doc_commands.py JOBS RESULTS``), it runs the jobs of the JSON
file JOBS and writes their exit status and output to RESULTS: Python commands in forks of one
process that imported the repository's modules once, so that each costs no start-up.
"""
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
KINDS = ("run", "run on quickstart outputs", "needs widerface", "needs gpu", "needs network", "elsewhere")
MARKER = re.compile(r"<!--\s*test:\s*(.*?)\s*-->\s*$")
PYTHONS = ("python", "python3", ".venv/bin/python")
# folders written into by documented commands: real folders in the sandbox, their files linked
SANDBOX_FOLDERS = ("data", "widerface_evaluate")
SANDBOX_SKIPPED = {".git", "outputs", "detections", "__pycache__", ".pytest_cache"}


def parse_marker(text):
    """``(kind, {program: [args]}, elsewhere path)`` of a marker's text, or ValueError."""
    head, _, small = text.partition(" small:")
    head = head.strip()
    path = None
    if head.startswith("elsewhere "):
        head, path = "elsewhere", head[len("elsewhere "):].split(":")[0].strip()
    if head not in KINDS:
        raise ValueError(f"unknown kind '{head}' (one of: {', '.join(KINDS)})")
    extra = {}
    for part in filter(None, (p.strip() for p in small.split(";"))):
        program, *args = shlex.split(part)
        extra[program] = args
    if extra and not head.startswith("run"):
        raise ValueError(f"'small:' is for the run kinds, not '{head}'")
    return head, extra, path


def commands(block):
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [line.split(" #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def blocks(doc):
    """``[(doc:line, marker text or None, [commands])]`` of every bash block of ``doc``."""
    found, marker = [], None
    lines = (REPO / doc).read_text().splitlines(keepends=True)
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("```bash"):
            end = next(k for k in range(number + 1, len(lines)) if lines[k].startswith("```"))
            found.append((f"{doc}:{number + 1}", marker, commands("".join(lines[number + 1:end]))))
            number, marker = end + 1, None
            continue
        if line.strip():
            match = MARKER.match(line.strip())
            marker = match.group(1) if match else None
        number += 1
    return found


def expand_braces(word):
    """Bash's brace expansion of one word: ``a{0,1}b`` -> ``[a0b, a1b]``."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    return [expanded for choice in match.group(1).split(",")
            for expanded in expand_braces(word[:match.start()] + choice + word[match.end():])]


def argv_of(block_commands, extra=None, variables=None):
    """Each command of a block as an argv (braces and the ``variables`` set by ``NAME=value``
    lines, here or in earlier blocks, expanded; ``extra[program]`` appended), or a string where
    bash must run it."""
    variables = {} if variables is None else variables
    argvs = []
    for command in block_commands:
        assignment = re.fullmatch(r"([A-Za-z_]\w*)=(\S+)", command)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        words = [w for word in shlex.split(re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), command))
                 for w in expand_braces(word)]
        if words[0] not in PYTHONS:
            argvs.append(command)
            continue
        program = words[2] if words[1] == "-m" else words[1]
        argvs.append(words[1:] + list((extra or {}).get(program, [])))
    return argvs


def make_sandbox(folder):
    """A working folder that looks like a clone without outputs: the repository's files linked,
    the folders that commands write into made real."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name in SANDBOX_SKIPPED:
            continue
        if entry.name in SANDBOX_FOLDERS:
            (folder / entry.name).mkdir()
            for child in entry.iterdir():
                if child.name not in ("synthetic", "widerface", "widerface_txt"):
                    (folder / entry.name / child.name).symlink_to(child)
        else:
            (folder / entry.name).symlink_to(entry)
    return folder


def exit_status(code):
    """The exit status of ``sys.exit(code)``, printing a message as Python does."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def run_python(argv, cwd, output):
    """Run ``python ARGV`` (a script or ``-m module``) in a fork; its exit status."""
    pid = os.fork()
    if pid:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    status = 1
    try:
        os.chdir(cwd)
        with open(output, "w") as handle:
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = str(cwd)
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:  # an absolute path, for the processes that the script's pools spawn
            script = str(Path(cwd).absolute() / argv[0])
            sys.argv = [script, *argv[1:]]
            sys.path[0] = str(Path(script).resolve().parent)
            runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as exc:  # sys.exit(): None, a status, or a message (status 1)
        status = exit_status(exc.code)
    except BaseException:  # noqa: B902 -- the child reports every failure as a status
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def run_jobs(jobs):
    """``[{cwd, argv or shell, output}]`` -> ``[exit status]``, in order."""
    statuses = []
    for job in jobs:
        if "shell" in job:
            with open(job["output"], "w") as handle:
                statuses.append(subprocess.run(["bash", "-c", job["shell"]], cwd=job["cwd"], stdout=handle,
                                               stderr=subprocess.STDOUT).returncode)
        else:
            statuses.append(run_python(job["argv"], job["cwd"], job["output"]))
    return statuses


def preload():
    """Import what the documented scripts import, once, before any fork."""
    sys.path.insert(0, str(REPO))
    for module in ("torch", "torchvision", "cv2", "numpy", "onnx", "onnxruntime", "config", "train", "detect",
                   "test_widerface", "export_onnx", "quickstart", "detector", "backends", "data.synthetic",
                   "widerface_evaluate.evaluation", "bench.probe", "bench.grad_budget", "utils.plot_log"):
        try:
            __import__(module)
        except ImportError:
            pass


if __name__ == "__main__":
    preload()
    jobs = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run_jobs(jobs)))
