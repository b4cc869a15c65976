"""Cost estimator: what a stack costs idle and per job (``batchctl cost``).

``cost.model`` describes a stack's billable parts, ``cost.prices`` loads the price book
(``prices.json``), ``cost.estimator`` does the arithmetic and prints the tables.
"""
