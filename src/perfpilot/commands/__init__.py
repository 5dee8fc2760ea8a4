"""One module per CLI command; each exposes ``register(app: typer.Typer) -> None``."""
