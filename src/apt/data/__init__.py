"""Data: offline assets, named sources of models and texts, calibration sampling."""
