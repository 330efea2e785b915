"""Built-in data sources: generated shapes (the demo) and Fashion-MNIST."""
