"""Aggregate per-video shapes-evaluation records into accuracies and a text table."""
from __future__ import annotations

import math
from collections import defaultdict

ATTRIBUTES = ("color", "shape", "direction", "size")


def aggregate(records: list[dict], consistent_threshold: float = 0.9) -> dict:
    """Accuracies per attribute (over the records whose target names it), temporal consistency
    (mean score, fraction of videos with score >= ``consistent_threshold``), detection rate, the
    fraction with every scored attribute correct, per-target-value accuracy and confusion counts."""
    n = len(records)
    acc, per_value, confusion = {}, {}, {}
    for a in ATTRIBUTES:
        scored = [r for r in records if r["correct"].get(a) is not None]
        if not scored:
            continue
        acc[a] = sum(bool(r["correct"][a]) for r in scored) / len(scored)
        by_value, conf = defaultdict(list), defaultdict(lambda: defaultdict(int))
        for r in scored:
            by_value[r["target"][a]].append(bool(r["correct"][a]))
            conf[r["target"][a]][str(r["pred"][a])] += 1
        per_value[a] = {k: sum(v) / len(v) for k, v in sorted(by_value.items())}
        confusion[a] = {k: dict(v) for k, v in sorted(conf.items())}
    tc = [r["temporal_consistency"] for r in records]
    return {
        "num_videos": n,
        "accuracy": acc,
        "temporal_consistency": sum(tc) / n if n else math.nan,
        "consistent_rate": sum(t >= consistent_threshold for t in tc) / n if n else math.nan,
        "detection_rate": sum(r["temporal"]["detection_rate"] for r in records) / n if n else math.nan,
        "all_correct": (sum(all(v for v in r["correct"].values() if v is not None) for r in records) / n
                        if n else math.nan),
        "per_value": per_value,
        "confusion": confusion,
        **({"psnr": sum(r["psnr"] for r in records if "psnr" in r) / max(1, sum("psnr" in r for r in records))}
           if any("psnr" in r for r in records) else {}),
    }


def format_report(summary: dict) -> str:
    """Human-readable multi-line summary of ``aggregate``'s output."""
    lines = [f"shapes eval: {summary['num_videos']} videos"]
    for a, v in summary["accuracy"].items():
        worst = min(summary["per_value"][a].items(), key=lambda kv: kv[1])
        lines.append(f"  {a:<10} accuracy {100 * v:6.2f}%   (worst: {worst[0]} {100 * worst[1]:.1f}%)")
    lines.append(f"  temporal consistency {summary['temporal_consistency']:.4f}   "
                 f"consistent videos {100 * summary['consistent_rate']:.2f}%   "
                 f"detection rate {100 * summary['detection_rate']:.2f}%")
    lines.append(f"  all scored attributes correct {100 * summary['all_correct']:.2f}%")
    if "psnr" in summary:
        lines.append(f"  PSNR vs reference {summary['psnr']:.2f} dB")
    return "\n".join(lines)
