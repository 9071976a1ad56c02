"""Executable documentation: every fenced block of README.md and docs/*.md is tagged, and the `phantom` ones run.

The tag is an HTML comment on the line just before the fence: `<!-- example: phantom -->` (run here on a small phantom),
`<!-- example: real-data -->` or `<!-- example: illustration -->` (not run). A file's phantom blocks run in order in one
temporary folder that holds a 60-image phantom at `./phantom`: ```python blocks as scripts of this interpreter, ```text
and ```bash blocks line by line (`$ COMMAND`, with `cxrres` the installed program); the output a block shows under a
command is checked for its shape (lines without digits exactly, the leading words of the others, the file names).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TAGS = ("phantom", "real-data", "illustration")
TAG_LINE = re.compile(r"^\s*<!--\s*example:\s*([\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
RUNNABLE = ("python", "text", "bash", "console", "shell")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DIGIT = re.compile(r"\d")
FILE_NAME = re.compile(
    r"(?<![\w/.-])(?:[\w.-]+/)+[\w.-]*\w|(?<![\w/.-])[\w-]+\.(?:csv|png|json|md|onnx|pt|html|yaml|npy|txt|ckpt|svg|tex)\b"
)
UNITS = ("img/s", "it/s", "s/it", "images/s")
COMMAND_TIMEOUT_S = 300


@dataclass
class Block:
    """One fenced block: where it starts (1-based line of the opening fence), its tag, language and body lines."""

    path: Path
    line: int
    tag: str | None
    lang: str
    body: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def parse_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown file and the problems found (an untagged or unclosed block, an unknown tag)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    open_block: Block | None = None
    fence, indent = "", ""
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if open_block is not None:
            if match and match.group(2).startswith(fence) and not match.group(3):
                blocks.append(open_block)
                open_block = None
            else:
                open_block.body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            continue
        if not match:
            continue
        indent, fence = match.group(1), match.group(2)
        previous = TAG_LINE.match(lines[number - 2]) if number >= 2 else None
        tag = previous.group(1) if previous else None
        open_block = Block(path, number, tag, match.group(3).lower())
        if tag is None:
            problems.append(
                f"{path.name}:{number}: fenced block without an `<!-- example: {'|'.join(TAGS)} -->` line "
                "just before it"
            )
        elif tag not in TAGS:
            problems.append(f"{path.name}:{number}: unknown example tag {tag!r}; use one of {', '.join(TAGS)}")
        elif tag == "phantom" and open_block.lang not in RUNNABLE:
            problems.append(
                f"{path.name}:{number}: a phantom block must be ```python or ```text/```bash "
                f"(`$ ` commands), not ```{open_block.lang}"
            )
    if open_block is not None:
        problems.append(f"{open_block.where}: fenced block never closed")
    return blocks, problems


def commands_of(block: Block) -> list[tuple[str, list[str]]]:
    """(command, the output lines the block shows under it) for each `$ ` line of a text/bash block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.body:
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"{block.where}: a phantom block's first line must be a `$ ` command, not {line!r}")
    if not steps:
        raise AssertionError(f"{block.where}: a phantom text block without a `$ ` command runs nothing")
    return steps


def output_lines(output: str) -> list[str]:
    """The lines a terminal would have shown (progress-bar updates split at carriage returns, colour codes removed)."""
    return [line.rstrip() for line in re.split(r"[\r\n]", ANSI.sub("", output)) if line.strip()]


def shape_problems(shown: list[str], output: str) -> list[str]:
    """How the output a README shows differs in shape from the real output: a line without digits must be printed
    exactly; a line with numbers must share its leading words with a printed line; every file name shown must appear."""
    real = output_lines(output)
    exact = set(real)
    starts = [" ".join(line.split()) for line in real]
    text = "\n".join(real)
    problems = []
    for line in (s.rstrip() for s in shown):
        if not line.strip() or line.strip() == "...":
            continue
        if not DIGIT.search(line):
            if line not in exact:
                problems.append(f"line not printed: {line!r}")
        else:
            lead = " ".join(w for w in _leading_words(line))
            if lead and not any(s.startswith(lead) for s in starts):
                problems.append(f"no printed line starts with {lead!r} (shown: {line!r})")
        problems += [
            f"file name {name!r} not printed (shown: {line!r})" for name in file_names(line) if name not in text
        ]
    return problems


def file_names(line: str) -> list[str]:
    """The paths and file names in a line (`runs/p32`, `predictions.csv`), not rates (`img/s`) or counts (`9/9`)."""
    return [name for name in FILE_NAME.findall(line) if re.search("[A-Za-z]", name) and not name.endswith(UNITS)]


def _leading_words(line: str) -> list[str]:
    """The words of a line before its first word with a digit."""
    words = []
    for word in line.split():
        if DIGIT.search(word):
            break
        words.append(word)
    return words


def run_environment(workdir: Path) -> dict[str, str]:
    """The environment of a block: `cxrres` is this interpreter's program, caches stay in the temporary folder."""
    bindir = Path(sys.executable).parent
    if not (bindir / "cxrres").is_file():  # an interpreter without the installed script: a one-line stand-in
        bindir = workdir.parent / "bin"
        bindir.mkdir(exist_ok=True)
        shim = bindir / "cxrres"
        shim.write_text(f"#!{sys.executable}\nimport sys\nfrom cxrres.cli import main\nsys.exit(main())\n")
        shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["CXRRES_CACHE_DIR"] = str(workdir.parent / "cache")
    env.setdefault("PYTHONPATH", str(REPO / "src"))
    return env


def run_block(block: Block, workdir: Path, env: dict[str, str]) -> None:
    """Run one phantom block in `workdir`; fails with the block's place, the command and the end of its output."""
    if block.lang == "python":
        script = workdir.parent / f"block_{block.line}.py"
        script.write_text("\n".join(block.body) + "\n", encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert done.returncode == 0, f"{block.where}: the example failed:\n{done.stderr[-3000:]}"
        return
    for command, shown in commands_of(block):
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
        output = done.stdout + "\n" + done.stderr
        assert done.returncode == 0, f"{block.where}: `{command}` exited {done.returncode}:\n{output[-3000:]}"
        problems = shape_problems(shown, output)
        assert not problems, (
            f"{block.where}: `{command}` printed other lines than the block shows:\n  "
            + "\n  ".join(problems)
            + "\nprinted:\n"
            + "\n".join(output_lines(output))[-3000:]
        )


def phantom_files() -> list[Path]:
    """The documentation files with at least one phantom block."""
    return [p for p in doc_files() if any(b.tag == "phantom" for b in parse_blocks(p)[0])]


def test_every_fenced_block_is_tagged() -> None:
    problems = [problem for path in doc_files() for problem in parse_blocks(path)[1]]
    assert not problems, "\n".join(problems)
    counts = {tag: sum(b.tag == tag for p in doc_files() for b in parse_blocks(p)[0]) for tag in TAGS}
    assert counts["phantom"] >= 10 and counts["real-data"] >= 10, counts


def test_the_tag_check_catches_untagged_unknown_and_unclosed_blocks(tmp_path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "\n".join(
            [
                "<!-- example: phantom -->",
                "```python",
                "print(1)",
                "```",  # 2: fine
                "",
                "```text",
                "$ cxrres --help",
                "```",  # 6: untagged
                "<!-- example: phantom -->",
                "",
                "```bash",
                "$ ls",
                "```",  # 11: blank line between tag and fence
                "1. item",
                "   <!-- example: real-data -->",
                "   ```text",
                "   $ cxrres describe",
                "   ```",  # 16: fine
                "<!-- example: maybe -->",
                "```text",
                "```",  # 20: unknown tag
                "<!-- example: phantom -->",
                "```yaml",
                "a: 1",
                "```",  # 23: a phantom block that cannot run
                "<!-- example: illustration -->",
                "````",
                "```",
                "````",  # 27: a longer fence holds a shorter one
                "<!-- example: illustration -->",
                "```",
                "never closed",
            ]
        )
        + "\n"
    )
    blocks, problems = parse_blocks(doc)
    assert [b.line for b in blocks] == [2, 6, 11, 16, 20, 23, 27]
    assert blocks[3].body == ["$ cxrres describe"] and blocks[3].tag == "real-data" and blocks[6].body == ["```"]
    assert [p.split(":")[1] for p in problems] == ["6", "11", "20", "23", "31"]
    assert (
        "unknown example tag 'maybe'" in problems[2] and "not ```yaml" in problems[3] and "never closed" in problems[4]
    )


def test_the_shape_check_compares_words_and_file_names_not_numbers() -> None:
    printed = (
        "prepare 32 px: 100%|##| 9/9 [00:01<00:00]\rprepare 32 px: 100%|##| 9/9\n"
        "class             n precision accuracy\nNodule           26     0.000    0.000\n"
        "wrote out/p32/predictions.csv, 3 heat maps\n\x1b[Adone\n"
    )
    same_shape = [
        "prepare 32 px: 100%|##| 405/405 [00:05<00:00, 70.17img/s]",
        "class             n precision accuracy",
        "...",
        "Nodule            3     0.500    0.250",
        "wrote out/p32/predictions.csv, 9 heat maps",
        "done",
    ]
    assert shape_problems(same_shape, printed) == []
    assert shape_problems(["class n precision accuracy"], printed) == ["line not printed: 'class n precision accuracy'"]
    assert "no printed line starts with 'Mass'" in shape_problems(["Mass  3  0.5"], printed)[0]
    assert shape_problems(["wrote out/p64/predictions.csv, 3 heat maps"], printed) == [
        "file name 'out/p64/predictions.csv' not printed (shown: 'wrote out/p64/predictions.csv, 3 heat maps')"
    ]
    block = Block(Path("README.md"), 7, "phantom", "text", ["$ cxrres a", "out a", "", "$ cxrres b  # note"])
    assert commands_of(block) == [("cxrres a", ["out a", ""]), ("cxrres b  # note", [])]
    with pytest.raises(AssertionError, match="README.md:7: a phantom block's first line"):
        commands_of(Block(Path("README.md"), 7, "phantom", "text", ["output before a command"]))
    with pytest.raises(AssertionError, match="without a `\\$ ` command"):
        commands_of(Block(Path("README.md"), 7, "phantom", "text", [""]))


@pytest.mark.parametrize("path", phantom_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_phantom_examples_run(path: Path, tmp_path: Path) -> None:
    """A file's phantom blocks, in order, in one folder holding `./phantom` (60 images of 64 px, seed 3)."""
    from cxrres.synthetic import synthesize

    workdir = tmp_path / "work"
    workdir.mkdir()
    synthesize(workdir / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    env = run_environment(workdir)
    blocks = [b for b in parse_blocks(path)[0] if b.tag == "phantom"]
    for block in blocks:
        run_block(block, workdir, env)
