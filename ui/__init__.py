"""The app's user interface: one builder per tab, one per detector card, and the files it serves.

Gradio lives here and in ``app.py`` only; everything below (``pipeline``, ``explain``,
``detectors``) returns arrays and text.
"""
