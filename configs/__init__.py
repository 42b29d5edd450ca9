"""Frozen-dataclass configs, one per model variant and training stage."""
