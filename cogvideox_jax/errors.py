"""Errors raised when reading weights and configs (converters, checkpoints, config files)."""


class CheckpointFormatError(ValueError):
    """A weight file or config is missing, corrupt or of an unknown format."""


class WeightMismatchError(ValueError):
    """Weights do not fit the model config: missing / unexpected keys or shape mismatches."""

    def __init__(self, missing=(), unexpected=(), shape_mismatches=(), context: str = "", causes=(), notes=()):
        """``causes``: lines naming what is wrong in words (e.g. a config field against the weights),
        shown first; ``notes``: lines shown after the key lists."""
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.shape_mismatches = sorted(shape_mismatches)
        self.causes = list(causes)
        lines = [f"weights do not match the model config{(' (' + context + ')') if context else ''}:"]
        lines += [f"  {c}" for c in self.causes]

        def _fmt(title, items):
            if items:
                shown = items[:20]
                more = f" ... and {len(items) - 20} more" if len(items) > 20 else ""
                lines.append(f"  {title} ({len(items)}): " + ", ".join(map(str, shown)) + more)

        _fmt("missing keys", self.missing)
        _fmt("unexpected keys", self.unexpected)
        _fmt("shape mismatches [key: checkpoint vs expected]", self.shape_mismatches)
        lines += [f"  {n}" for n in notes]
        super().__init__("\n".join(lines))
