"""The market simulator: price processes, bots and scenarios."""
