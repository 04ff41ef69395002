"""``python -m omnicron_core.cli``: the ``omnicron`` command."""

from . import main

main(prog_name="omnicron")
