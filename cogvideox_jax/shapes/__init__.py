"""The shapes project: the embedded default model, its synthetic dataset, evaluator, recipe and
sampling extras (contrast guidance, best-of-N). Built on the core; nothing in the core imports it."""
