"""Tally's capacity model: the sizing of every tier, derived from each environment's inputs.

`model` holds the inputs and the rules (each rule's Python and spreadsheet forms side by side),
`spreadsheet` writes them as a workbook with live formulas, `__main__` is the command line.
"""
