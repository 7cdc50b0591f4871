"""Pure renderers of one search run: a self-contained HTML page and a terminal tree, from a plain view dict."""
