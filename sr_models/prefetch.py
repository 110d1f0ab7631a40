"""Download Hub models ahead of use: ``python -m sr_models.prefetch [NAME or ORG/REPO ...]``.

The well-known pipelines (``sr_models.hub.HUB_MODELS``) are gigabytes, so they are never fetched
by a click in the app: this command fetches them (all of them when no name is given) into the
local Hub cache, after which they load offline. Any other Hub id works too (our model repos, or
a stock pipeline repo whose pipeline has a family). It is the one place, with
``python -m comparisons.perceptual --prefetch`` for the LPIPS / FID weights, that downloads.
"""

from __future__ import annotations

import argparse
import sys

from sr_models.hub import HUB_MODELS, cached_folder, download, find_entry
from sr_models.types import ModelUnavailableError

PERCEPTUAL_PREFETCH = "python -m comparisons.perceptual --prefetch"


def build_parser() -> argparse.ArgumentParser:
    known = "\n".join(f"  {e.name:20s} {e.repo_id} (about {e.download_size_mb} MB)" for e in HUB_MODELS)
    return argparse.ArgumentParser(
        prog="python -m sr_models.prefetch",
        description="Download Hugging Face Hub models into the local Hub cache, so they run offline.",
        epilog=f"known names:\n{known}\n\nLPIPS / FID / IS weights: {PERCEPTUAL_PREFETCH}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv=None) -> int:
    parser = build_parser()
    parser.add_argument("models", nargs="*", help="short names or Hub repo ids (default: every known name)")
    parser.add_argument("--check", action="store_true", help="only say what is in the local cache; download nothing")
    args = parser.parse_args(argv)
    targets = args.models or [e.name for e in HUB_MODELS]
    failed = 0
    for target in targets:
        entry = find_entry(target)
        if entry is None and "/" not in target:
            known = ", ".join(e.name for e in HUB_MODELS)
            print(f"{target}: unknown name; give a known name ({known}) or a Hub repo id ORG/REPO", file=sys.stderr)
            failed += 1
            continue
        repo_id, pipeline = (entry.repo_id, True) if entry else (target, None)
        cached = cached_folder(repo_id, bool(pipeline))
        if cached is not None:
            print(f"{target}: in the local Hub cache ({cached})")
            continue
        if args.check:
            print(f"{target}: not in the local Hub cache")
            failed += 1
            continue
        size = f" (about {entry.download_size_mb} MB)" if entry else ""
        print(f"{target}: downloading {repo_id}{size} ...", flush=True)
        try:
            folder = download(repo_id, pipeline)
        except ModelUnavailableError as err:
            print(f"{target}: {err} - check the connection (or HF_HUB_OFFLINE) and run this again", file=sys.stderr)
            failed += 1
            continue
        print(f"{target}: done ({folder})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
