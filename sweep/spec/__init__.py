"""The sweep file: its pydantic schema and loader (``config``) and the generated reference (``docs``)."""
