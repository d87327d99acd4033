"""Measuring a catalog's search on the operator's own labelled query pictures (check sets)."""
