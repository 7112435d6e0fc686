#!/usr/bin/env python3
"""Django's command-line utility for Tally, from a checkout (installed: `python -m tally`)."""

from tally.__main__ import main

if __name__ == "__main__":
    main()
