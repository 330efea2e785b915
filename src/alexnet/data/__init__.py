"""Data: prepare image trees into stores (§2), read them, augment them (§4.1)."""
