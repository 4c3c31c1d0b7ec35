"""Stage 2: train the graph network of Cao et al. (ICME 2023) on cached features, with its clustering
parts on request.

    python -m pipeline.train                                  # data/ucf -> runs/ucf: the defaults
    python -m pipeline.train --dataset sht --epochs 100
    python -m pipeline.train --bc --bcg                       # + batch clustering (eq. 1) and guidance (eq. 4-5)
    python -m pipeline.train --paper-literal                  # the paper's method as printed
    python -m pipeline.train --adjacency none                 # plain top-k MIL (no graph)

The defaults were decided on real data (README, "Choices"; bench/RESULTS.md, issue 15): the graph
backbone with the temporal-proximity graph, trained by the k-max loss alone. On real features K=2
k-means found no anomalies, so eq. 1 and eq. 4-5 are off unless asked for.

One step (batch of B/2 normal + B/2 abnormal videos, each resampled to T segments):
    out = model(x)                                   x (B, T, D) -> scores (B, T)
    with --bc or --bcg:
    z   = clustering_input(out[cluster_layer])       (B, T, D')  FC output before dropout, each video's
                                                     mean and the normal videos' leading directions
                                                     removed, L2-normalised
    k-means K=2 on the normal videos' segments  -> centres c^n, L_bc^n = min(d^n, mu)   (eq. 1)
    k-means K=2 on the abnormal videos' segments -> centres c^a, L_bc^a = 1 / d^a        (eq. 1)
    with --bcg: pseudo-labels of abnormal segments (eq. 4; by default the cluster farther from the
    normal videos), scores expanded by alpha (eq. 5) (with --bcg-gate R only when d^a >= R d^n)
    L = L_kmax(expanded scores) + lambda1 * (L_bc^n + L_bc^a)                            (eq. 2, 3)
--paper-literal gives the printed forms (every part on, GCN-1, eq. 4's cosine rule, HL-Net's graphs
summed, no residual, raw inputs). The k-means of each batch starts from the cross-batch memory
(Sec. 2.3, way 1 by default).

Writes into the run directory (``--out``, default runs/<dataset>):
    config.json   every setting of the run
    log.jsonl     one JSON line per epoch (losses, centre distances, validation criterion)
    last.pt       the full training state after the last finished epoch (for --resume)
    model.pt      the final model; best.pt the validation-selected one (with --val-fraction)
All files are written atomically; every checkpoint loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from pipeline.model.training import CLUSTER_CENTERS, CLUSTER_LAYERS, LITERAL_KEEPS, PAPER_LITERAL, TrainConfig, train
from pipeline.model import data as D
from pipeline.common.cli import HelpFormatter, check_device, run_cli
from pipeline.model.clustering import CROSS_BATCH_WAYS, PSEUDO_LABELS, PSEUDO_RULES
from pipeline.model.network import ADJACENCIES, CENTRES, GRAPH_FEATURES, PROXIMITIES, SIMILARITIES, VIEWS

def literal_flags() -> str:
    """PAPER_LITERAL as command-line flags (booleans as --x / --no-x)."""
    def flag(k, v):
        name = k.replace("_", "-")
        return (f"--{name}" if v else f"--no-{name}") if isinstance(v, bool) else f"--{name} {v}"
    return " ".join(flag(k, v) for k, v in PAPER_LITERAL.items())


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Train the graph network of Cao et al. (ICME 2023) on cached I3D features; --bc --bcg add its "
                    "clustering parts, --paper-literal runs it as printed. "
                    "Defaults chain: --dataset ucf reads data/ucf and writes runs/ucf.",
        epilog="Output: a line per epoch (losses, validation); progress bars only on a terminal, so a log "
               "redirected to a file holds the epoch lines alone. --quiet prints nothing but warnings and errors.",
        formatter_class=HelpFormatter)
    d = TrainConfig()
    p.add_argument("--dataset", default=d.dataset, choices=D.DATASETS, help="dataset rules (labels, lists, T)")
    p.add_argument("--data-root", default=None, help="data root (default data/<dataset>): split lists, features")
    p.add_argument("--out", default=None, help="run directory (default runs/<dataset>)")
    p.add_argument("--train-list", default=None, help="training list (default: found in the data root)")
    p.add_argument("--features", default=None, help="feature folder (default: <data-root>/features or the data root)")
    p.add_argument("--feature-dim", type=int, default=d.feature_dim,
                   help="feature width the files must have (default: the first training file's, e.g. 2048 "
                        "for I3D ResNet-50, 1024 for Inception-I3D)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the larger kind of training videos")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the model, the validation split, the batches and k-means (same seed, same model)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--T", type=int, default=None, help="segments per training video (default UCF 150, SHT 100, XD 200)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="videos per batch, half normal half abnormal")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout after each hidden layer, in [0, 1)")
    p.add_argument("--lambda1", type=float, default=d.lambda1, help="weight of the batch clustering loss (eq. 3)")
    p.add_argument("--mu", type=float, default=d.mu, help="upper bound of the normal-cluster distance (eq. 1)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="score expansion factor (eq. 5)")
    p.add_argument("--cluster-layer", default=d.cluster_layer, choices=CLUSTER_LAYERS, help="layer clustered (Table 3)")
    p.add_argument("--cross-batch", default=d.cross_batch, choices=CROSS_BATCH_WAYS,
                   help="cross-batch learning way (Table 4); none = random k-means starts")
    p.add_argument("--bc", action=argparse.BooleanOptionalAction, default=d.bc,
                   help="batch clustering loss, eq. 1 (Table 2). Off by default: on real features (UCSD Ped2) K=2 "
                        "k-means found no anomalies in any epoch (cluster purity = the majority share), so the loss "
                        "pushes apart clusters that are not normal vs anomalous (README, 'Choices'); --bc turns it on")
    p.add_argument("--bcg", action=argparse.BooleanOptionalAction, default=d.bcg,
                   help="clustering-guided scores, eq. 4-5 (Table 2). Off by default: on real features (UCSD Ped2) "
                        "the clusters' pseudo-labels were no better than the anomaly rate and boosting them lowered "
                        "the frame AUC (README, 'Choices'); --bcg turns them on, as in the paper")
    p.add_argument("--bcg-gate", type=float, default=d.bcg_gate, metavar="R",
                   help="apply eq. 5 to a batch only when its abnormal videos' two clusters lie at least R times "
                        "as far apart as its normal videos' (eq. 1's distances); 0 = always (the paper)")
    p.add_argument("--kmeans-iters", type=int, default=d.kmeans_iters, help="Lloyd iterations of each batch's k-means")
    p.add_argument("--adjacency", default=d.adjacency, choices=ADJACENCIES,
                   help="the graph: 'proximity' (the temporal-proximity graph alone; chosen on real data), "
                        "'learned' or 'sum' (with the similarity graph: a learned or an equal-weight mix), "
                        "'similarity' alone, 'none' (plain top-k MIL)")
    p.add_argument("--residual", action=argparse.BooleanOptionalAction, default=d.residual,
                   help="a linear residual of each graph layer's input (HL-Net's layer); --no-residual is the "
                        "plain graph convolution H' = A H W + b the paper describes")
    p.add_argument("--similarity", default=d.similarity, choices=SIMILARITIES,
                   help="similarity graph: 'centred' (ours: cosines of deviations from the video mean, "
                        "pairs below 0.7 masked out) or 'hlnet' (the literal softmax of thresholded cosines)")
    p.add_argument("--graph-features", default=d.graph_features, choices=GRAPH_FEATURES,
                   help="features the similarity graph is built from: the input (HL-Net) or the FC output "
                        "before dropout")
    p.add_argument("--proximity", default=d.proximity, choices=PROXIMITIES,
                   help="temporal-proximity graph: 'plain' exp(-|i-j|/e) (the paper), or 'gated' (ours): kept only "
                        "between segments whose deviations from the video mean agree, so a strong event does not "
                        "spill into the clips around it")
    p.add_argument("--cluster-center", default=d.cluster_center, choices=CLUSTER_CENTERS,
                   help="remove each video's mean from the clustered activations before k-means (ours), "
                        "or cluster them as they are ('none', literal)")
    p.add_argument("--normal-subspace", type=int, default=d.normal_subspace, metavar="R",
                   help="before k-means, remove from every segment the R leading directions along which the "
                        "batch's normal videos vary inside themselves (ours; 0 = off, the paper): left in, they "
                        "are what K=2 k-means splits on. At most half the clustered layer's width is removed")
    p.add_argument("--pseudo-rule", default=d.pseudo_rule, choices=PSEUDO_RULES,
                   help="eq. 4: 'cosine' (the paper), 'mean' (the cluster of higher mean score is anomalous) or "
                        "'minority' (the batch's smaller cluster is anomalous; scores not used)")
    p.add_argument("--pseudo-labels", default=d.pseudo_labels, choices=PSEUDO_LABELS,
                   help="controls for eq. 4-5: 'cluster' (the method), 'ones' (boost every abnormal segment: "
                        "the clamp alone), 'random' (random labels at the clustering's positive rate)")
    p.add_argument("--paper-literal", action="store_true",
                   help=f"the paper's literal forms where ours differ: {literal_flags()} (overrides those flags). "
                        f"It keeps what the paper leaves open: {LITERAL_KEEPS}")
    p.add_argument("--views", default=d.views, choices=("auto",) + VIEWS,
                   help="how the views of a clip (the crop axis of the features) make its score: 'max' scores "
                        "every region of --coverage grid features and keeps the most anomalous (spatial MIL: an "
                        "anomaly is often small); 'sample' trains on one random crop per video and averages the "
                        "crops at test (RTFM's 10 crops); auto: max for grid features, else sample")
    p.add_argument("--sparsity", type=float, default=d.sparsity, metavar="W",
                   help="add W x the mean score of the batch's abnormal videos to the loss (Sultani et al.'s "
                        "sparsity term; ours): the k-max loss alone never lowers the normal part of an abnormal "
                        "video. 0 = off")
    p.add_argument("--video-centre", action=argparse.BooleanOptionalAction, default=d.video_centre,
                   help="give the network each segment beside its deviation from its own video's median "
                        "(ours; the deviation localises, the absolute part keeps wholly anomalous videos); "
                        "--no-video-centre: the features alone, as the paper")
    p.add_argument("--centre", choices=CENTRES, default=d.centre,
                   help="the reference state of --video-centre: 'normal' = the mean of the --normal-share of the "
                        "video's segments that look most like the training normal videos (its most normal "
                        "moments, also where an anomaly fills half the video); 'median': the video's median "
                        "(default: normal; README 'Choices', issue 22)")
    p.add_argument("--normal-share", type=float, default=d.normal_share, metavar="F",
                   help="--centre normal: the share of a video's segments averaged into its reference "
                        "(at least one segment; default %(default)s)")
    p.add_argument("--smooth", type=int, default=d.smooth, metavar="CLIPS",
                   help="at test (evaluate, detect, watch), each clip's score is the mean of this many clips "
                        "centred on it (odd; 1 = off; default %(default)s). Stored in the checkpoint")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=d.standardize,
                   help="z-score each feature dimension with the training videos' statistics (stored in the "
                        "model, so evaluate and detect apply them); without it raw I3D-like features train "
                        "slowly or not at all (default: on; bench/RESULTS.md, issue 8)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="hold out this share of the training videos (stratified) and keep the checkpoint "
                        "with the best video-level AUC on them as best.pt; the test set is never used. "
                        "Default 0: every training video trains and model.pt is the result (pipeline.study "
                        "holds out 0.1, because its protocol reports the validation-selected model)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="do not read or write the resampled training set in <data-root>/.pipeline_cache/ "
                        "(keyed by the list, the files' sizes and times, T and the width; safe to delete)")
    p.add_argument("--keep-epochs", action="store_true", help="keep every epoch's model under epochs/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a run")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but warnings and errors (no per-epoch lines, no progress bars)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "paper_literal", False):
        values.update(PAPER_LITERAL)
    return TrainConfig(**values)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        check_device(args.device)                  # before anything is read or written
        train(config_from_args(args))
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
