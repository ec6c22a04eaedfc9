"""The end-to-end time-to-accuracy comparison behind `make demo`: `python -m dsampling_ext.experiments`.

Data (data.py), models (models.py), and the harness that trains the same model on the same data
with every method (runner.py), compares them and sweeps the budget (compare.py), and reports
wall-clock to a target accuracy, the sweep and the frontier (report.py); InfoBatch as published
(infobatch.py) is a baseline.
"""
