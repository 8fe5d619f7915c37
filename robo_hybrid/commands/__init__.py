"""One module per `robo-hybrid` command, each with `main(args) -> int` (the top layer: nothing imports it)."""
