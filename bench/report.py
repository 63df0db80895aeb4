"""Writes one benchmark's section into BENCHMARKS.md, leaving the other sections alone."""

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below was written by the command shown with it; rerun it to reproduce.\n"


# Widest first: the first flag present names the host's class.
ISA_FLAGS = (("amx_tile", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu() -> str:
    """The CPU's name and its widest matrix/vector instructions: the same code runs about twice as
    fast on a host with AVX-512 as on one with AVX2 only, so speed figures name their host."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    isa = next((name for flag, name in ISA_FLAGS if flag in flags), "no AVX2" if flags else "instructions unknown")
    details = [f"model {info['model']}", isa] if "model" in info else [isa]
    return f"{info.get('model name') or platform.processor() or 'unknown CPU'} ({', '.join(details)})"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}; load average when written: {load}"
    )


def command() -> str:
    """The command line as run from the repository root (``python -m bench.x`` and absolute
    paths both come out as ``python bench/x.py ...``, which works from a fresh clone)."""
    script = Path(sys.argv[0]).resolve()
    root = BENCHMARKS.parent
    args = [str(script.relative_to(root)) if script.is_relative_to(root) else sys.argv[0], *sys.argv[1:]]
    return "python " + " ".join(shlex.quote(a) for a in args)


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    across exec, so a child started from a large parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def median(values: list[float]) -> float:
    return statistics.median(values)


def per_round_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the ratios of the same rounds: rounds are interleaved, so each ratio is like for like."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def update_section(title: str, body: str) -> None:
    """Replace (or append) the section ``## title`` with ``body``, stamped with the command."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    stamp = f"Command: `{command()}`  \nRun: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}\n\n"
    section = f"## {title}\n\n{stamp}{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip() + "\n")
    print(section)


def publish(title: str, body: str, print_only: bool = False) -> None:
    """Print the section (``--no-write``) or write it into BENCHMARKS.md."""
    if print_only:
        print(body)
    else:
        update_section(title, body)
