"""Print the compute table (paper table IV, extended) for ATM and every baseline: counted MACs of
one 600-step task in the paper's convention (sub-goal generator only) and in full, plus the ratios
UniPi / ATM and UniPi-Replan / UniPi. See `atm_bench/baselines/compute.py` for what is counted.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compute_table.py [--preset paper] [--text-dim 768] [--json out.json]

The same table: `atm-bench baselines compute`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from atm_bench.baselines.compute import STEPS, markdown, measure, ratios

    parser = argparse.ArgumentParser(description="compute table of ATM and the baselines")
    parser.add_argument("--preset", default="paper", help="smoke, quick or paper (default paper)")
    parser.add_argument("--text-dim", type=int, default=768, help="instruction embedding width (768 = bert-base-cased, as the paper)")
    parser.add_argument("--json", default=None, help="also write the rows and ratios to this JSON file")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = measure(args.preset, args.text_dim)
    print(markdown(rows, args.preset))
    print(f"(counted in {time.perf_counter() - start:.0f} s)")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"preset": args.preset, "text_dim": args.text_dim, "steps": STEPS, "rows": rows,
                                    "ratios": ratios(rows)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
