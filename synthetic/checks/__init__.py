"""One module per family of predictions; each returns Prediction rows and tidy tables."""
