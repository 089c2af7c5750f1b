"""Problem families with known constants; importing this package registers every family."""
