"""Loading, curation and splitting of examples; knows nothing about storage paths."""
