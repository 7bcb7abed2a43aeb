"""How long the CLI takes to answer: `--help`, `--version`, `pooling`, a usage error, and a one-query search.

    python scripts/bench_startup.py [--runs 7] [--src DIR ...] [--json out.json]

Each command runs in a fresh process through the tree's own console-script entry point (``[project.scripts]``
in its pyproject.toml: what a user waits for, exit included), ``--runs`` times, interleaved across the source trees
given with ``--src`` (default: this checkout), so that two versions are compared in one run on the same machine; the
table gives the median wall time and the peak memory (max RSS) of each. The one-query search runs on a small Milvus
Lite index of the sample photos, built once per source tree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import sample_photos  # noqa: E402

# Runs the tree's console script, given as "module:function" in $POOLVEC_ENTRY.
CLI = (
    "import importlib, os, sys; sys.argv[0] = 'poolvec'; mod, fn = os.environ['POOLVEC_ENTRY'].split(':'); "
    "entry = getattr(importlib.import_module(mod), fn)"
)
# Also writes the process's own peak memory (VmHWM: this program's, not the forked parent's) into $RSS_OUT once
# the command is done (before exit handlers: a console script may end the process from one of them).
CLI_RSS = (
    CLI
    + "\ntry:\n    entry()\nfinally:\n    open(os.environ['RSS_OUT'], 'w').write("
    + "[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
)
CLI += "; entry()"


def entry_point(src: Path) -> str:
    """The ``poolvec`` console script of source tree ``src``, as ``module:function``."""
    found = re.search(r'^poolvec\s*=\s*"([\w.]+:\w+)"', (src / "pyproject.toml").read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"{src}/pyproject.toml declares no poolvec console script")
    return found.group(1)


def run(src: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh ``poolvec ARGS`` process run from source tree ``src``."""
    with tempfile.NamedTemporaryFile() as rss:
        env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "100", "RSS_OUT": rss.name}
        env["POOLVEC_ENTRY"] = entry_point(src)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", CLI_RSS, *args], cwd=cwd, env=env, capture_output=True, check=False)
        wall = time.perf_counter() - t0
        return wall, int(Path(rss.name).read_text() or 0) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--src", type=Path, action="append", help="source tree (repeatable); default: this checkout")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sources = args.src or [ROOT]
    work = Path(tempfile.mkdtemp(prefix="poolvec-startup-"))
    photos = work / "photos"
    sample_photos.write(photos)
    query = str(photos / "coffee.jpg")
    commands = {
        "--help": ["--help"],
        "--version": ["--version"],
        "pooling": ["pooling"],
        "bad option": ["index", "--bogus"],
        "search, 1 query": ["search", query, "-k", "5"],
    }
    for i, src in enumerate(sources):  # one small index per tree (their stored formats may differ)
        (work / f"t{i}").mkdir()
        subprocess.run(
            [sys.executable, "-c", CLI, "index", str(photos), "-q"],
            cwd=work / f"t{i}",
            env={**os.environ, "PYTHONPATH": str(src), "POOLVEC_ENTRY": entry_point(src)},
            check=True,
            capture_output=True,
        )
    times: dict[tuple[int, str], list[float]] = {}
    rss: dict[tuple[int, str], float] = {}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            for i, src in enumerate(sources):
                wall, mb = run(src, cmd, work / f"t{i}")
                times.setdefault((i, name), []).append(wall)
                rss[(i, name)] = max(rss.get((i, name), 0.0), mb)
    header = "| command | " + " | ".join(f"{s} (s, MB)" for s in sources) + " |"
    print(header)
    print("|---|" + "---:|" * len(sources))
    results = []
    for name in commands:
        cells = []
        for i in range(len(sources)):
            med = statistics.median(times[(i, name)])
            cells.append(f"{med:.2f} s, {rss[(i, name)]:.0f} MB")
            results.append(
                {
                    "command": name,
                    "src": str(sources[i]),
                    "median_s": med,
                    "runs": times[(i, name)],
                    "peak_rss_mb": rss[(i, name)],
                }
            )
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
