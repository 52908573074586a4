"""Reports: CSV and official-JSON exports, Markdown summaries, charts and the HTML report."""
