"""Forgery Lens training package: forgery synthesis, data sets, training, evaluation, export.

Run ``python -m training --help`` for the commands.
"""
