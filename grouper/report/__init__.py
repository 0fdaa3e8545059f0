"""The HTML report of a settlement (charts and sortable tables in one offline file)."""
