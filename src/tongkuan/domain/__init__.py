"""Values every layer shares: categories, boxes, products, filters, the change log and search
spaces. Nothing here imports anything else of tongkuan's, so any layer may import it."""
