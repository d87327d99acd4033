"""Adapting search to one catalog: what is learned from its own products, and stored with it."""
