"""What the model writes: the spreadsheet, the Markdown table, the role variables, the
typed predictions."""
