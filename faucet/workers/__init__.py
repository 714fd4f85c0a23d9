"""R (and Python) worker processes: their commands, their supervisor, the events they
report. Imports pool and config.
"""
