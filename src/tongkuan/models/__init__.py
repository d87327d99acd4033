"""A model's life cycle for a catalog: which models it can search with (shipped, tuned,
quantized), the stored model records, and the one switch workflow (stage the new model's
vectors while the old one serves, switch in one transaction, undo) that tuning, quantizing,
whitening and choosing a model all go through."""
