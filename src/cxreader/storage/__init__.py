"""Records database."""
