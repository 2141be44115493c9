"""Measuring a sketch against what its dataset knows about the object.

- :mod:`.metrics`: pure functions of point clouds and images (chamfer, precision / recall / F1, surface distance and
  coverage, foreground touch);
- :mod:`.references`: the references a dataset offers (world-position images, object masks, ground-truth curves);
- :mod:`.report`: every measurement a trained run allows, as one JSON-ready report, and its terminal tables
  (``clipsketch-eval``).
"""
