"""The matching engine: pure domain (orders, book, accounts, engine) plus its service wiring."""
