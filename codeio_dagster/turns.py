"""Asset names of the per-turn stages: turn 0 is `responses`/`verdicts`, revision t adds `_turn_t`."""


def responses_name(turn: int) -> str:
    """The responses asset of `turn`."""
    return "responses" if turn == 0 else f"responses_turn_{turn}"


def verdicts_name(turn: int) -> str:
    """The verdicts asset of `turn`."""
    return "verdicts" if turn == 0 else f"verdicts_turn_{turn}"
