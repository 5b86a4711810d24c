"""Where scheduled commands live: the store contract and its implementations."""
