"""The ``omnicron`` command line (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("omnicron CLI: not built yet")
