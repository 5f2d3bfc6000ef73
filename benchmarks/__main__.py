"""Run the benchmark cases of the named chapters (default: all) and update RESULTS.md.

Usage: ``python -m benchmarks [getting_started fairness robustness interpret privacy distributed]``.
Each chapter's section of ``benchmarks/RESULTS.md`` is replaced by the new run; the
other sections stay. Exit code 1 if a case misses its target or its values disagree.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import re
import sys
from pathlib import Path

import trustml_lab

from ._harness import Result, machine_description, run_case

CHAPTERS = ("getting_started", "fairness", "robustness", "interpret", "privacy", "distributed", "production", "text")
RESULTS = Path(__file__).with_name("RESULTS.md")


def available_chapters() -> list[str]:
    here = Path(__file__).parent
    return [c for c in CHAPTERS if (here / f"{c}.py").exists()]


def format_section(chapter: str, results: list[Result]) -> str:
    lines = [
        f"<!-- chapter:{chapter} -->",
        f"## {chapter}",
        "",
        f"{datetime.date.today().isoformat()}; {machine_description()}",
        "",
        "| case | ours (s) | reference | reference (s) | speedup | target | met | same values |",
        "|---|---:|---|---:|---:|---|---|---|",
    ]
    for r in results:
        met = {None: "-", True: "yes", False: "**no**"}[r.meets_target]
        same = {None: "-", True: "yes", False: "**no**"}[r.same_values]
        lines.append(f"| {r.case} | {r.ours_s:.4f} | {r.reference_name} | {r.reference_s:.4f} | "
                     f"{r.speedup:.2f}x | {r.target or '-'} | {met} | {same} |")
    lines.append(f"<!-- end:{chapter} -->")
    return "\n".join(lines)


def update_results(sections: dict[str, str]) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else (
        "# Benchmark results\n\nMedians of repeated runs, ours against the reference library in "
        "one process; speedup = reference time / our time. Regenerate with `make bench`.\n")
    for chapter, section in sections.items():
        pattern = re.compile(rf"<!-- chapter:{chapter} -->.*?<!-- end:{chapter} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _, section=section: section, text)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trustml-lab benchmarks")
    parser.add_argument("chapters", nargs="*", help=f"any of {', '.join(available_chapters())}")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one run each, values only (implies --no-write)")
    args = parser.parse_args(argv)
    chapters = args.chapters or available_chapters()
    unknown = set(chapters) - set(available_chapters())
    if unknown:
        parser.error(f"chapters: unknown {sorted(unknown)}; expected some of {available_chapters()}")
    trustml_lab.setup(seed=0)  # seeds, and honours TRUSTML_THREADS
    failed = False
    sections = {}
    for chapter in chapters:
        module = importlib.import_module(f"benchmarks.{chapter}")
        results = []
        for case in module.cases(smoke=args.smoke):
            result = run_case(case, smoke=args.smoke)
            results.append(result)
            print(f"{chapter:>16} | {result.case:<40} ours {result.ours_s:9.4f}s  "
                  f"{result.reference_name} {result.reference_s:9.4f}s  speedup {result.speedup:7.2f}x"
                  f"  target {result.target or '-'}: {result.meets_target}", flush=True)
            failed |= result.meets_target is False
        sections[chapter] = format_section(chapter, results)
    if args.smoke:
        return 0
    if not args.no_write:
        update_results(sections)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
