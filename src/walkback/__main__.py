"""``python -m walkback``: the same as the ``walkback`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
