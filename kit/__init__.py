"""Domain-free building blocks: clock, ids, errors, database base, standard number formats."""
