"""Renderers of stored runs and results: the HTML page and the terminal (tables, trees, progress bars),
and the plain listings of what is stored that both render (``--json`` prints them as they are)."""
