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
