"""Thin Typer commands: each parses its options and calls one library function."""
