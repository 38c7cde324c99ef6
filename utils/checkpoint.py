"""The one place that reads and writes weights and training checkpoints.

Reading never runs code from a file (``torch.load(weights_only=True)``); a file that needs
pickled objects, or whose keys do not fit the model, is refused with one line naming it.
A file that is not a PyTorch file is named for what it is (``not_weights``).
Writing is atomic: a temporary file on the same file system, then ``os.replace``, so an
interrupted write leaves the previous file, never a truncated one (weights, and the text
files written beside them or as results), and a link at the target is replaced, not
followed. An output that cannot be written is one line (``cannot_write``, ``make_folder``,
``writable_folder``). Also the weights' sidecar ``.json`` (network, activation) that
``train.py`` writes beside them.
"""
import json
import os
import tempfile
import zipfile

import torch

from .errors import TDKDError, located

_NESTED_KEYS = ("state_dict", "model")


def load_file(path):
    """``torch.load`` a checkpoint safely; every failure becomes a one-line ``TDKDError`` that
    says first what the file is when it is not a PyTorch file (``not_weights``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TDKDError(located(path, "checkpoint not found"))
    what = not_weights(path)
    if what:
        raise TDKDError(located(path, what))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling failure is reported the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "refused: it holds pickled Python objects, not only tensors (weights_only=True)"
        raise TDKDError(located(path, f"cannot load checkpoint: {reason}")) from None


_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
          (b"BM", "a BMP image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"))


def not_weights(path):
    """What the file ``path`` is when it cannot be a PyTorch file (empty, an image, text, a
    zip cut short, other bytes), as a message; None for a zip archive or a pickle, which
    ``torch.load`` reads.

    ``torch.save`` writes a zip archive (since PyTorch 1.6) or, before, a pickle (first byte
    0x80); anything else is named here, before any word about pickles."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "empty file (0 bytes), not a weights file"
    if head.startswith(b"PK\x03\x04"):
        return None if zipfile.is_zipfile(path) else "a zip archive cut short or corrupt (an interrupted copy?)"
    if head.startswith(b"\x80"):
        return None
    what = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        what = "a WebP image"
    if what:
        return f"{what}, not a weights file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not only a character cut at the end of the 512 bytes
            return "not a PyTorch file (neither a zip archive nor a pickle)"
    return "a text file, not a weights file"


def extract_state_dict(checkpoint):
    """The model weights of a plain state dict, ``{'state_dict': ...}`` or ``{'model': ...}``,
    with any ``module.`` (DataParallel / DDP) prefix removed ({} when there are none)."""
    if not isinstance(checkpoint, dict):
        return {}
    for key in _NESTED_KEYS:
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {_strip_prefix(k): v for k, v in checkpoint.items()
            if isinstance(k, str) and isinstance(v, torch.Tensor)}


def read_state_dict(path):
    """The model weights stored in the file ``path`` (see ``extract_state_dict``)."""
    state_dict = extract_state_dict(load_file(path))
    if not state_dict:
        raise TDKDError(located(path, "holds no model weights (no name -> tensor entries)"))
    return state_dict


def _strip_prefix(key):
    return key[len("module."):] if key.startswith("module.") else key


KINDS = {
    "backbone": ("an ImageNet backbone (no detector layers)",
                 "pass it to train.py as --backbone_weights"),
    "student": ("a RetinaFace detector without task heads (a student, from --mode student or distillation)",
                "pass it as -m to detect.py / test_widerface.py, or as --resume_net to train.py"),
    "teacher": ("a RetinaFace teacher with task heads (from --mode teacher)",
                "pass it to train.py --mode distillation as --teacher_weights, or as -m to test it"),
}


def weights_kind(state_dict):
    """``'teacher'``, ``'student'`` or ``'backbone'`` from the key names; None if unknown."""
    keys = list(state_dict)
    if any(k.startswith("ClassHead.") and ".conv_dw_3x3." in k for k in keys):
        return "teacher"
    if any(k.startswith("ClassHead.") for k in keys):
        return "student"
    if keys and not any(k.startswith(("body.", "fpn.", "ssh")) for k in keys) and any(
            k.startswith(("stage1.", "conv1.", "layer1.")) for k in keys):
        return "backbone"
    return None


def description_path(path):
    """``weights.pth`` -> ``weights.json``."""
    return os.path.splitext(os.fspath(path))[0] + ".json"


def describe_weights(path):
    """The sidecar ``<weights>.json`` written by ``train.py`` ({} for a published state dict)."""
    meta = description_path(path)
    if not os.path.isfile(meta):
        return {}
    try:
        with open(meta) as handle:
            described = json.load(handle)
    except (OSError, ValueError) as exc:
        raise TDKDError(located(meta, f"cannot read the weights' description ({exc})")) from None
    if not isinstance(described, dict):
        raise TDKDError(located(meta, "expected a JSON object such as {\"network\": \"mobile0.25\"}"))
    return described


ACTIVATION_UNKNOWN = ("its activation is not stored in the file: --activation relu for TDKD's and this "
                      "repository's weights, leaky for Pytorch_Retinaface's")


def network_hint(model, state_dict, path):
    """'the file fits --network N, not M (activation ...)' when a RetinaFace of another network
    refuses the weights and ``model.fitting_networks`` finds theirs; else None."""
    identify = getattr(model, "fitting_networks", None)
    own = getattr(model, "network", None)
    names = [n for n in identify(state_dict) if n != own] if identify else []
    if not names:
        return None
    try:
        activation = describe_weights(path).get("activation") if path is not None else None
    except TDKDError:
        activation = None
    how = f"activation {activation}, from its .json" if activation else ACTIVATION_UNKNOWN
    return f"the file fits --network {' or '.join(names)}" + (f", not {own}" if own else "") + f" ({how})"


def _kind_mismatch(expected, state_dict):
    """'this file is X, but Y is needed here; use it as ...' when the kinds differ."""
    found, needed = weights_kind(state_dict), weights_kind(expected)
    if found is None or needed is None or found == needed:
        return None
    what, use = KINDS[found]
    return f"this file is {what}, but {KINDS[needed][0]} is needed here; {use}"


def check_keys(model, state_dict, path, strict=True):
    """Raise one line listing missing / unexpected / mis-shaped keys (a few of each), led by
    what the file is when it is another kind of weights (backbone, student, teacher)."""
    expected = model.state_dict()
    # BatchNorm fills a missing num_batches_tracked (checkpoints of old PyTorch versions).
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing and strict:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected and strict:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} keys with other shapes (e.g. {'; '.join(shapes[:3])})")
    if not strict and len(missing) == len(expected):
        problems.append("no key matches this model")
    if not problems:
        return
    hint = network_hint(model, state_dict, path)
    mismatch = _kind_mismatch(expected, state_dict)
    if mismatch:
        raise TDKDError(located(path, f"{mismatch} ({'; '.join(problems)})" + (f"; {hint}" if hint else "")))
    if hint:
        raise TDKDError(located(path, f"{hint}: " + "; ".join(problems)))
    raise TDKDError(located(path, "weights do not fit this model: " + "; ".join(problems)))


def load_state(module, state_dict, path, strict=True):
    """Load an in-memory state dict read from ``path`` after checking every key."""
    check_keys(module, state_dict, path, strict=strict)
    module.load_state_dict(state_dict, strict=strict)
    return module


def load_weights(model, path, strict=True):
    """Load model weights from the file ``path`` into ``model`` after checking every key."""
    return load_state(model, read_state_dict(path), path, strict=strict)


def save_atomic(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    _write_atomic(path, lambda handle: torch.save(obj, handle))


def write_text_atomic(text, path, tmp_folder=None):
    """Write ``text`` to ``path`` through a temporary file in ``tmp_folder`` (default: beside
    ``path``; on the same file system), so a reader never sees a truncated file."""
    _write_atomic(path, lambda handle: handle.write(text.encode("utf-8")), tmp_folder)


def write_bytes_atomic(data, path):
    """Write ``data`` (bytes) to ``path`` through a temporary file beside it (an ONNX model)."""
    _write_atomic(path, lambda handle: handle.write(data))


def _write_atomic(path, write, tmp_folder=None):
    """``write(binary handle)`` into a temporary file, flush it to disk, rename it to ``path``
    (a link at ``path`` is replaced, never followed).

    On any failure the temporary file is removed and ``path`` keeps its previous content; a
    folder that cannot be made or written is one ``TDKDError`` line (``cannot_write``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    make_folder(folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=tmp_folder or folder)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise


def cannot_write(path, exc):
    """The one line of an output that could not be written: ``path: cannot write (reason)``."""
    return TDKDError(located(path, f"cannot write ({exc.strerror or exc})"))


def writable_folder(path):
    """Make the output folder ``path`` and check that files can be written in it, so that a
    run stops with one line before it writes anything, not at its first output."""
    make_folder(path)
    try:
        with tempfile.TemporaryFile(prefix=".tmp_", dir=path):
            pass
    except OSError as exc:
        raise TDKDError(located(path, f"cannot write in this folder ({exc.strerror or exc})")) from None
    return path


def make_folder(path):
    """Make the folder ``path`` (and its parents), or one ``TDKDError`` line saying why not."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise TDKDError(located(path, "is a file, not a folder"))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise TDKDError(located(path, f"cannot create the folder ({exc.strerror or exc})")) from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


TRAINING_KEYS = ("model", "optimizer", "scheduler", "epoch", "iteration", "torch_rng", "mode", "network", "config")


def load_training_checkpoint(path):
    """A full training checkpoint written by ``train.py`` (model, adapters, optimiser, ...),
    checked here, in one place, so that a damaged one is refused in one line before training."""
    state = load_file(path)
    if not isinstance(state, dict) or "optimizer" not in state:
        raise TDKDError(located(path, "not a training checkpoint of train.py (it holds no optimiser state); "
                                      "use --resume_net for plain weights"))
    problems = training_checkpoint_problems(state)
    if problems:
        raise TDKDError(located(path, "damaged training checkpoint: " + "; ".join(problems)
                                + "; resume from another one (e.g. an earlier <network>_epoch_<N>.pth)"))
    return state


def training_checkpoint_problems(state):
    """What is missing, mistyped or non-finite in a training checkpoint ([] when it is sound)."""
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing:
        return [f"missing {', '.join(missing)}"]
    checks = [
        ("model", _tensor_dict_problem(state["model"])),
        ("distiller", _tensor_dict_problem(state["distiller"]) if "distiller" in state else None),
        ("optimizer", _optimizer_problem(state["optimizer"])),
        ("scheduler", None if isinstance(state["scheduler"], dict) else "not a dict"),
        ("torch_rng", _rng_problem(state["torch_rng"])),
        ("config", _config_problem(state["config"])),
    ]
    checks += [(key, "not a string") for key in ("mode", "network") if not isinstance(state[key], str)]
    checks += [(key, f"{state.get(key)!r} is not a count") for key in ("epoch", "iteration", "epoch_batches")
               if key in state and not _is_count(state[key])]
    return [f"{key}: {problem}" for key, problem in checks if problem]


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_dict_problem(tensors):
    if not isinstance(tensors, dict) or not tensors:
        return "not a dict of tensors"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        return "holds entries that are not name -> tensor"
    return _non_finite_problem(tensors.items())


def _non_finite_problem(named_tensors):
    """'non-finite values (NaN or inf) in N tensors, e.g. KEY' (None when all are finite)."""
    bad = [name for name, t in named_tensors if t.is_floating_point() and not torch.isfinite(t).all()]
    return f"non-finite values (NaN or inf) in {len(bad)} tensors, e.g. {bad[0]}" if bad else None


def _optimizer_problem(optimizer):
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) or not isinstance(groups, list):
        return "not an optimiser state (state and param_groups)"
    if not groups or not all(isinstance(g, dict) and isinstance(g.get("params"), list) and "lr" in g for g in groups):
        return "parameter groups without params or lr"
    buffers = [(f"state.{index}.{name}", value) for index, entry in optimizer["state"].items()
               if isinstance(entry, dict) for name, value in entry.items() if isinstance(value, torch.Tensor)]
    return _non_finite_problem(buffers)


def _rng_problem(rng):
    expected = torch.get_rng_state()
    if not isinstance(rng, torch.Tensor) or rng.dtype != expected.dtype or rng.shape != expected.shape:
        return f"not a torch RNG state (a {tuple(expected.shape)} uint8 tensor)"
    return None


def _config_problem(text):
    try:
        settings = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        settings = None
    return None if isinstance(settings, dict) else "not the run's settings as a JSON object"
