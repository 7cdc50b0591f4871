"""Diagnosis: what a trained model gets wrong and which intervention might fix it."""
