"""Model Label Learning: the hub of expert models, the semantic graph (SDAG), model labels."""
