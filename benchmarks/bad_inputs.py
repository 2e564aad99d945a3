"""The bad-input catalogue (tests/bad_input_catalogue.py) run against this checkout and, optionally, an older one:
what each mistake got before and after, as a table.

    python benchmarks/bad_inputs.py [--before /path/to/older/checkout] [-o benchmarks/bad_inputs]

Each run builds its own workspace (a tiny dataset planned by nnU-Net, a FuseUNet model trained 2 × 4 iterations,
an ACDC-layout source) in a temporary folder; the commands run with PYTHONPATH and nnUNet_extTrainer pointing at the
checkout under test. Writes catalogue.md and catalogue.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bad_input_catalogue import CASES, build_workspace, run_case  # noqa: E402
from nnunet_fuse.reporting import format_table  # noqa: E402


def run_catalogue(checkout: Path, log) -> dict:
    """{case name: {"kind", "message", "changed", "returncode"}} with the commands of ``checkout``."""
    with tempfile.TemporaryDirectory() as folder:
        workspace = build_workspace(Path(folder), log=log)
        workspace.env["PYTHONPATH"] = str(checkout)
        workspace.env["nnUNet_extTrainer"] = str(checkout / "trainers")
        outcomes = {}
        for i, case in enumerate(CASES, 1):
            outcome = run_case(case, workspace)
            kind = outcome.kind + (f"; changed {len(outcome.changed)} file(s)" if outcome.changed else "")
            log(f"[{i}/{len(CASES)}] {case.name}: {kind}")
            outcomes[case.name] = {"kind": kind, "message": outcome.message, "changed": outcome.changed,
                                   "returncode": outcome.returncode}
        return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=None, help="an older checkout to compare with")
    parser.add_argument("-o", default=str(REPO / "benchmarks" / "bad_inputs"), help="output folder")
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "after": run_catalogue(REPO, print)}
    if args.before:
        results["before"] = run_catalogue(Path(args.before).resolve(), print)
    header = ["case", "command", "mistake", *(["before"] if args.before else []), "after", "message now"]
    rows = [header]
    for case in CASES:
        after = results["after"][case.name]
        message = after["message"].replace("|", "/")
        rows.append([case.name, case.command, case.what,
                     *([results["before"][case.name]["kind"]] if args.before else []), after["kind"],
                     message[:160] + ("…" if len(message) > 160 else "")])
    out = Path(args.o)
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalogue.json").write_text(json.dumps(results, indent=2))
    counts = {k: sum(1 for r in results[k].values() if r["kind"] == "clear error") for k in ("before", "after")
              if k in results}
    (out / "catalogue.md").write_text(
        f"# Bad-input catalogue, {results['date']}: {len(CASES)} cases\n\n`python benchmarks/bad_inputs.py"
        f"{' --before OLD_CHECKOUT' if args.before else ''}`; clear errors: "
        f"{', '.join(f'{k} {v}' for k, v in counts.items())}. 'traceback, ends in the message': inside nnU-Net's "
        f"own command, whose traceback ends in our message.\n\n{format_table(rows)}\n")
    print(f"wrote {out / 'catalogue.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
