"""Writing outputs safely: never over something the command did not write, never inside one of its own inputs, and
all at once (build beside the target, then swap it in), so a crash never leaves a half-written checkpoint or bundle
where a good one was. Any OS error becomes one OutputError that names the path. Torch-free."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import InputError, OutputError

ADVICE = {
    errno.EROFS: "the file system is read-only; choose a path on a writable disk",
    errno.EACCES: "permission denied; choose a path you may write, or fix its permissions",
    errno.EPERM: "permission denied; choose a path you may write, or fix its permissions",
    errno.ENOSPC: "the disk is full; free space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another disk",
    errno.EISDIR: "it is a directory; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file is where a directory should be; choose another path",
    errno.ENAMETOOLONG: "the path is too long",
}


def output_error(path: str | Path, exc: OSError, doing: str = "cannot write") -> OutputError:
    """One line naming the path, what failed and what to do."""
    reason = exc.strerror or str(exc)
    advice = ADVICE.get(exc.errno, "check the path and the disk")
    return OutputError(f"{path}: {doing} ({reason}); {advice}")


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def refuse_inputs(out: str | Path, inputs: dict[str, str | Path | None], option: str = "--out",
                  holding: bool = False) -> None:
    """An output equal to an input or inside one (or, with ``holding``, one that holds an input: replacing it would
    delete the input) is refused."""
    target = _resolved(out)
    for name, path in inputs.items():
        if path is None:
            continue
        source = _resolved(path)
        if _within(target, source) or (holding and _within(source, target)):
            where = "is" if target == source else ("is inside" if _within(target, source) else "holds")
            raise OutputError(f"{option} {out} {where} {name} {path}: writing there would change your input; "
                              f"choose a directory of its own for {option}")


def writable_directory(path: str | Path, option: str) -> None:
    """Create ``path`` if needed and make sure files can be created in it, or an OutputError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".r1omni-write-check-"):
            pass
    except OSError as exc:
        raise output_error(path, exc, f"{option}: cannot write there") from None


def check_output_dir(out: str | Path, inputs: dict[str, str | Path | None], overwrite: bool = False,
                     previous: Callable[[Path], set[str] | None] = lambda path: None, option: str = "--out") -> None:
    """Refuse an output directory that would destroy something the command did not write.

    - equal to an input, inside one, or holding one (replacing it would delete the input);
    - an existing file, or a non-empty directory that is not a previous output of this command;
    - a previous output (``previous(path)`` returns the set of relative paths it wrote) without ``overwrite``, or
      one that also holds files of the user's own.
    """
    refuse_inputs(out, inputs, option, holding=True)
    target = _resolved(out)
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"{option} {out}: exists and is not a directory; choose a new directory")
    present = {str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir()}
    if not present:
        return
    written = previous(target)
    if written is None:
        raise OutputError(f"{option} {out}: the directory is not empty and holds no earlier output of this command "
                          f"({len(present)} file(s)); nothing was written. Choose a new or empty directory")
    foreign = sorted(present - written)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputError(f"{option} {out}: holds files that are not part of the earlier output ({shown}); move "
                          f"them away, or choose a new directory")
    if not overwrite:
        raise OutputError(f"{option} {out}: holds an earlier output; pass --overwrite to replace it, or choose a "
                          "new directory")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ordinary_permissions(root: Path) -> None:
    """mkdtemp (and some writers) create private 0700/0600 entries; give the result the user's usual permissions,
    so a service account can read a bundle or checkpoint that another user wrote."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``target``, on failure it is removed. An OS error
    while writing becomes an OutputError naming ``target``. Callers check ``target`` first (check_output_dir)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise output_error(target, exc) from None
    try:
        yield staging
        _ordinary_permissions(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.filename and not _within(_resolved(exc.filename), _resolved(target.parent)):
            raise  # reading an input failed, not writing the output
        raise output_error(target, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---- reading inputs --------------------------------------------------------------------------------------------
JSON_MAX_BYTES = 256 * 1024 * 1024  # a published dataset of 10,000 rows is a few MB; a manifest a few kB


def parse_json(text: str, source: str, error: type[InputError] = InputError, advice: str = "") -> Any:
    """JSON text -> a value, or ``error`` naming ``source``: invalid JSON, NaN / Infinity (not JSON), or nesting
    too deep for the parser (a RecursionError from inside json otherwise)."""
    def no_constant(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=no_constant)
    except ValueError as exc:  # JSONDecodeError, and NaN / Infinity
        raise error(f"{source}: not valid JSON ({exc}){advice}") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply to be read{advice}") from None


def read_json(path: str | Path, error: type[InputError] = InputError, advice: str = "",
              max_bytes: int = JSON_MAX_BYTES) -> Any:
    """A JSON file -> a value, or ``error`` naming the file and what is wrong with it (missing, a directory, over
    ``max_bytes``, not UTF-8, not JSON, nested too deeply); ``advice`` is appended to the message."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise error(f"{path}: is a directory, not a JSON file{advice}")
        if size > max_bytes:
            raise error(f"{path}: {size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} MB a JSON file of this "
                        f"kind may hold{advice}")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc}){advice}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}){advice}") from None
    return parse_json(text, str(path), error, advice)


def read_json_object(path: str | Path, error: type[InputError] = InputError, advice: str = "") -> dict[str, Any]:
    """``read_json`` for files that must hold one JSON object (configs, tokenizer settings)."""
    data = read_json(path, error, advice)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """The file's sha256, read in 4 MB blocks (a bundle's part is gigabytes). OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
