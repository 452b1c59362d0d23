"""The API's queries, one module per resource. Each one is bounded by an index and a
LIMIT, or by a time range.

Every table's primary key starts with ``symbol`` and ends with ``time``, so "the newest
row of a symbol" is one index probe (``ORDER BY time DESC LIMIT 1``), and "the newest row
of each model of a symbol" is a loose index scan (:mod:`api.queries.latest`). Nothing
here scans raw ticks over a range.
"""
