"""python -m capacity ENV [ENV ...] [--out DIR] [--check] [--group-vars]

Writes DIR/capacity.xlsx (a sheet per environment), and per environment DIR/<env>.md (the
docs' table), DIR/<env>.vars.yml (the role variables) and DIR/<env>.predictions.json (what the
load tests check). With --group-vars it also writes the role variables to
deploy/<env>/group_vars/all/capacity.generated.yml, where Ansible reads them (only when every
check passes; otherwise that file is removed, so no play runs on sizing that cannot work).
Exits 1 and names every number when a check fails; with --check it only runs the checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .inputs import DEPLOY_DIR, load, load_reference
from .model import Model, evaluate
from .outputs import spreadsheet
from .outputs.ansible import GROUP_VARS_FILE, vars_yaml
from .outputs.markdown import markdown
from .registry import CHECKS


def write_files(out: Path, models: dict[str, Model], deploy_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    spreadsheet.write_workbook(models, out / "capacity.xlsx")
    for env, m in models.items():
        source, reference = load_reference(env, deploy_dir)
        (out / f"{env}.md").write_text(markdown(env, m, source, reference))
        (out / f"{env}.vars.yml").write_text(vars_yaml(env, m.values, m.inputs.calibrated))
        predictions = json.dumps(m.predictions().as_dict(), indent=2) + "\n"
        (out / f"{env}.predictions.json").write_text(predictions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capacity", description=__doc__.split("\n")[2])
    parser.add_argument("envs", nargs="+", metavar="ENV", help="environments under deploy/")
    parser.add_argument("--out", type=Path, default=Path("build/capacity"), help="output folder")
    parser.add_argument("--check", action="store_true", help="only run the checks")
    parser.add_argument(
        "--group-vars",
        action="store_true",
        help=f"write the role variables to deploy/ENV/{GROUP_VARS_FILE}",
    )
    parser.add_argument("--deploy-dir", type=Path, default=DEPLOY_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        models = {env: evaluate(load(env, args.deploy_dir)) for env in args.envs}
    except (OSError, ValueError) as error:
        print(f"capacity: {error}", file=sys.stderr)
        return 2

    if not args.check:
        write_files(args.out, models, args.deploy_dir)
        print(f"capacity: wrote {args.out}/capacity.xlsx and {', '.join(args.envs)} files")

    failed = False
    for env, m in models.items():
        failures = m.failures()
        if failures:
            failed = True
            print(f"capacity: {env}: {len(failures)} check(s) failed:", file=sys.stderr)
            for message in failures:
                print(f"  - {message}", file=sys.stderr)
        else:
            print(f"capacity: {env}: all {len(CHECKS)} checks pass")
        if args.group_vars:
            path = args.deploy_dir / env / GROUP_VARS_FILE
            if failures:
                path.unlink(missing_ok=True)
            else:
                path.write_text(vars_yaml(env, m.values, m.inputs.calibrated))
                print(f"capacity: {env}: wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
