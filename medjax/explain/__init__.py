"""Explaining trained models: which inputs a prediction rests on (keywords from attention or gradients)."""
