"""`python -m veil_tools.report`: the privacy-utility report (markdown + PNG figures) from JSON
measurements, one section per input kind (see `sections.SECTIONS`).

The generator only reads JSON, so the report is rebuilt without re-measuring, and the same
inputs give the same bytes: figures are drawn by matplotlib's Agg backend with no date or
software metadata, and nothing of the generating machine or clock goes into the output beyond
what the inputs record.
"""
