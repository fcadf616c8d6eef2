"""The filter language (grammar, AST, field table, SQL) and the one way to select structures."""
