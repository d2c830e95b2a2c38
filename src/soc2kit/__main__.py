"""``python -m soc2kit``: the CLI, for environments where the script is not on PATH."""

from soc2kit.cli.main import main

main()
