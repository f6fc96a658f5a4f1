"""`make bench`: run every benchmark and print its figures."""

from __future__ import annotations

import importlib
import sys

SUITES = (
    "bench.http_bench",
    "bench.bench_signing",
    "bench.bench_signing_http",
    "bench.bench_audit",
)


def main() -> None:
    only = sys.argv[1:]
    for name in SUITES:
        if only and not any(o in name for o in only):
            continue
        print(f"== {name}", flush=True)
        for label, figure in importlib.import_module(name).run():
            print(f"  {label:<34} {figure}", flush=True)


if __name__ == "__main__":
    main()
