"""Errors cxrres raises for bad input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class CxrresError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


class DataFormatError(CxrresError):
    """A metadata file is malformed: names the file, the line (1-based) and the problem."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class SplitError(CxrresError):
    """A split is inconsistent (patient overlap, duplicates, unknown images)."""


class MissingImagesError(CxrresError):
    """Images listed in the metadata are not on disk."""


class CacheError(CxrresError):
    """A resolution cache cannot be built or trusted."""


#: Exit status of a command stopped by SIGTERM (128 + 15, as a shell reports it); rerunning it resumes.
EXIT_TERMINATED = 143


class Terminated(CxrresError):
    """The process received SIGTERM (a scheduler pre-empting or timing out the job); its work can be resumed."""


#: What a file-system error means for the user, by errno name, for `describe_os_error`.
_OS_HINTS: dict[str, str] = {
    "ENOSPC": "no space (or no free inodes) left on the device; free some or write elsewhere",
    "EDQUOT": "disk quota exceeded; free some space or write elsewhere",
    "EROFS": "read-only file system; write elsewhere (--out DIR)",
    "EACCES": "permission denied; write elsewhere (--out DIR) or fix the permissions",
    "EPERM": "operation not permitted; write elsewhere (--out DIR) or fix the permissions",
    "EEXIST": "a file is in the way where a directory is needed; choose another --out",
    "ENOTDIR": "a file is in the way where a directory is needed; choose another --out",
    "EISDIR": "is a directory where a file is needed; choose another path",
    "ENOENT": "no such file or directory",
    "EIO": "input/output error (a failing disk or network file system)",
}


def describe_os_error(error: OSError, fallback_path: str | Path | None = None) -> str:
    """One line for a file-system error: the path (the error's, else `fallback_path`) and what to do."""
    import errno

    name = errno.errorcode.get(error.errno or 0, "")
    path = error.filename or fallback_path
    hint = _OS_HINTS.get(name) or (error.strerror or str(error)).strip().splitlines()[0]
    detail = f" [{name}]" if name else ""
    return f"{path}: {hint}{detail}" if path else f"{hint}{detail}"
