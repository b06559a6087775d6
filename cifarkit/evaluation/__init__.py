"""Evaluation: metrics and predict, test-time views, ten-crop, and the charts."""
