"""py-spy around a running server: sample every thread while it holds the GIL (where the
Python CPU goes), then summarize the collapsed stacks as markdown tables.

py-spy is a bench-only tool, installed into the virtualenv on first use. It attaches with
`--nonblocking` (no ptrace stop of the target), so the server runs at full speed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import common

OUT = common.ROOT / "bench" / "out"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    if found.exists():
        return str(found)
    on_path = shutil.which("py-spy")
    if on_path:
        return on_path
    common.log("installing py-spy (bench-only profiler) into the virtualenv")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(found)


def record(pid: int, seconds: float, output: Path, rate: int = 200) -> None:
    """Sample `pid` for `seconds` into `output` (collapsed stacks, one per line)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--nonblocking",
            "--threads",
            "--gil",
            "--rate",
            str(rate),
            "--duration",
            str(max(1, round(seconds))),
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 60,
    )


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` → `module.py:func`, keeping the package for ours."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("/gateway/", "/site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/gateway/":
                path = "gateway/" + path
            break
    return f"{path}:{match['func']}"


def summarize(raw: str, top: int) -> list[str]:
    """Markdown: samples by thread, gateway functions by inclusive share, leaves by self
    share. Thread names keep only their name (ids differ run to run)."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread")), "thread ?")
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        total += count
        name = thread.split(":", 1)[1].strip() if ":" in thread else thread
        threads[re.sub(r"_\d+$", "", name)] += count
        for function in {_short(f) for f in frames}:
            inclusive[function] += count
        if frames:
            leaf[_short(frames[-1])] += count
    if not total:
        return ["No samples."]
    lines = [
        f"Samples: {total:,}. Held the GIL: "
        + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common(6))
        + ".",
        "",
        "Gateway functions, inclusive (the function and what it calls):",
        "",
    ]
    ours = [(n, c) for n, c in inclusive.most_common() if n.startswith("gateway/")]
    ours = [(n, c) for n, c in ours if not n.startswith(("gateway/cli.py", "gateway/__main__"))]
    lines += common.table(
        ["function", "share"], [[f"`{n}`", f"{c / total:.1%}"] for n, c in ours[:top]]
    )
    lines += ["", "Self time (leaf frames), all code:", ""]
    lines += common.table(
        ["function", "share"], [[f"`{n}`", f"{c / total:.1%}"] for n, c in leaf.most_common(top)]
    )
    return lines
