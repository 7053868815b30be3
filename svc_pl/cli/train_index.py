"""Build per-speaker retrieval models from a preprocessed dataset (so-vits-svc's cluster model and
feature index).

Writes OUT_DIR/kmeans.pt (k-means centres, for `svc-pl infer --cluster-model`) and/or
OUT_DIR/feature_index/ (faiss indexes, for `svc-pl infer --feature-index`), and always OUT_DIR/unit_stats.pt (each
speaker's unit mean and spread, for `svc-pl infer --match-units` with models whose checkpoint lacks them: so-vits-svc
models). OUT_DIR defaults to DATASET_DIR.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help="preprocessed dataset (the output folder of `svc-pl preprocess`)")
    p.add_argument("-o", "--output-dir", default=None,
                   help="where kmeans.pt and feature_index/ go (default: DATASET_DIR)")
    p.add_argument("--kind", default="both", choices=["kmeans", "index", "both"],
                   help="what to build (default both)")
    p.add_argument("--n-clusters", type=int, default=10000,
                   help="k-means centres per speaker (default 10000, capped at the speaker's frame count)")
    p.add_argument("--split", default="train", choices=["train", "val", "all"],
                   help="clips to use (default train)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="use at most N random frames per speaker (less memory and time)")
    p.add_argument("--seed", type=int, default=1234)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from svc_pl.errors import UserFacingError
    from svc_pl.infer.cluster import ClusterModel
    from svc_pl.infer.retrieval import FeatureIndex, collect_units

    if args.n_clusters < 1:
        raise UserFacingError(f"--n-clusters must be at least 1, got {args.n_clusters}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserFacingError(f"--max-frames must be at least 1, got {args.max_frames}")
    dataset = Path(args.dataset_dir)
    if not dataset.is_dir():
        raise UserFacingError(f"{dataset}: no such folder; pass the output folder of `svc-pl preprocess`")
    out = Path(args.output_dir) if args.output_dir else dataset
    units = collect_units(dataset, split=args.split, max_frames_per_speaker=args.max_frames, seed=args.seed)
    for speaker, frames in units.items():
        print(f"{speaker}: {frames.shape[0]} frames of {frames.shape[1]}-dim units", file=sys.stderr)
    import torch

    from svc_pl.data.unit_stats import FILE_NAME, save_unit_stats, unit_stats_from_frames

    stats = {name: unit_stats_from_frames(torch.from_numpy(frames).T) for name, frames in units.items()}
    save_unit_stats(stats, out / FILE_NAME)
    print(f"unit statistics ({len(stats)} speakers) -> {out / FILE_NAME}")
    if args.kind in ("kmeans", "both"):
        cluster = ClusterModel.fit(units, n_clusters=args.n_clusters, seed=args.seed)
        cluster.save(out / "kmeans.pt")
        print(f"cluster model ({len(cluster.speakers)} speakers) -> {out / 'kmeans.pt'}")
    if args.kind in ("index", "both"):
        index = FeatureIndex.build(units, seed=args.seed)
        index.save(out / "feature_index")
        print(f"feature index ({len(index.speakers)} speakers) -> {out / 'feature_index'}")
    return 0
