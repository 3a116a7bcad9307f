"""``python -m studies.g2gnet_paper RESULTS_DIR OUT.md``: write the study's results document."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from g2gnet.errors import G2GError

from .results import build_results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.g2gnet_paper",
                                description="Write RESULTS.md from the committed run directories.")
    p.add_argument("results", help="the results/ directory (results/<dataset>/<suite>/<run>)")
    p.add_argument("out", help="the document to write, e.g. RESULTS.md")
    args = p.parse_args(argv)
    try:
        build_results(Path(args.results), Path(args.out))
    except G2GError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
