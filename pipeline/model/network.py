"""The backbone of Cao et al. (ICME 2023), Sec. 2.1: an FC layer and three graph convolutions.

    features (B, T, 2048)
      -> FC 2048->512, ReLU, dropout                       "fc"
      -> GraphConv 512->128, ReLU, dropout                 "gcn1"   (clustered by default, Sec. 2.2)
      -> GraphConv 128->32,  ReLU, dropout                 "gcn2"
      -> GraphConv 32->1, sigmoid                          "scores" (B, T) in [0, 1]

Every graph convolution uses the same adjacency, built once per video (Wu et al. 2020, HL-Net):

- feature similarity  A_sim[i, j]  = softmax_j( thr(cos(x_i, x_j)) ),  thr zeroes values < 0.7
- temporal proximity  A_prox[i, j] = exp(-|i - j| / e),  rows normalised to sum to 1

Which features the similarity graph is built from (``graph_features``) and how the threshold acts
(``similarity``) are our choices, measured in bench/RESULTS.md ("Issue 8"):

- ``graph_features="fc"`` (default): the FC output *before* dropout, a space the network learns, where
  anomalous and normal segments move apart; ``"input"`` (as HL-Net): the (standardised) input
  features. Never the dropout-masked FC output: with p = 0.6 the cosine
  of two identical segments falls to ~0.4, so in training no pair passes 0.7 while nearly all do at
  test, and the network would train on one graph and be tested on another.
- ``similarity="hlnet"`` (the paper's literal form): below-threshold cosines become 0 and still enter
  the softmax with weight exp(0). I3D-like features have cosines of 0.8-0.95 between any two clips of a
  video, so every row is a near-uniform average over the whole video: a "video mean" shortcut that
  lets the k-max loss paint whole anomalous videos anomalous (smearing), worst on long test videos.
  ``"centred"`` (default): cosines of the features minus their video mean, and below-threshold pairs get
  weight 0 (a masked softmax; a row with no similar segment keeps only itself). A segment then averages
  only over segments that deviate from the video in the same way, so an anomaly is not spread over
  its video.

- ``proximity="gated"`` (default): ``exp(-|i-j|/e)`` kept only between segments whose centred
  cosine is >= 0 (an edge-preserving smoother); ``"plain"``: the kernel as printed, which at test
  time spills a strong event's score 2-3 clips into the normal clips around it.

Our choice for combining the graphs (the paper does not say): each graph layer owns one learned
scalar w (initialised at 0.5 through a sigmoid) and uses the row-stochastic mix
``A = w * A_sim + (1 - w) * A_prox``. ``--adjacency sum`` uses the fixed 0.5/0.5 mix,
``similarity`` or ``proximity`` one graph alone, ``none`` no graph at all (each layer sees only its
own segment: the plain top-k MIL reference, not the paper's model).

A graph convolution is ``H' = A H W + b`` (Kipf & Welling without self-normalisation, since A is
already row-stochastic), by default plus a linear residual of H, as in HL-Net's graph layers
(``residual=False``, ``--no-residual``: the plain layer the paper describes).
``forward`` returns each layer's activation *before* dropout ("fc", "gcn1", "gcn2"): these are what
batch clustering sees (Sec. 2.2). The module does no I/O and holds no global state.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

ADJACENCIES = ("learned", "sum", "similarity", "proximity", "none")
#: How a video's views (the crop axis of its features) make one score a segment: "sample" (one
#: random view per video in training, probabilities averaged at test: RTFM's crops), "max" (every
#: view scored, the segment's score the most anomalous view's: regions of one frame, spatial MIL).
VIEWS = ("sample", "max")
#: The reference state of --video-centre: "normal" (:func:`normal_reference`), "median" (issue 22's first).
CENTRES = ("normal", "median")
SIMILARITIES = ("centred", "hlnet")
PROXIMITIES = ("gated", "plain")
GRAPH_FEATURES = ("input", "fc")


def video_centred_input(x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Each segment beside its deviation from its own video's typical state (ours):
    x (B, T, D) -> (B, T, 2D) = [x, x - ref], ref (B, 1, D) the video's reference state: given
    (:func:`normal_reference`), else the median over the video's T segments.

    The deviation is what changes inside a video (an object entering a region); the absolute part
    keeps what a wholly anomalous video has everywhere. Without it the network can score a video by
    its look alone (a crowded or dark recording) and paint every segment of it the same.
    """
    ref = torch.quantile(x, 0.5, dim=1, keepdim=True) if reference is None else reference   # (B, 1, D)
    return torch.cat([x, x - ref], dim=-1)                          # (B, T, 2D)


def normal_reference(x: torch.Tensor, normal_mean: torch.Tensor, normal_std: torch.Tensor,
                     share: float) -> torch.Tensor:
    """A video's most normal-looking state (ours, issue 22): the mean of the ``share`` of its
    segments (at least one) nearest the training normal videos' mean, in their z-space.

    x (B, T, D), normal_mean / normal_std (D,) -> (B, 1, D). Where an anomaly fills half a video the
    median is half anomalous; the segments that look most like the normal videos are not, so the
    deviation from them is large exactly where the anomaly is.
    """
    B, T, D = x.shape
    d = (((x - normal_mean) / normal_std) ** 2).sum(-1)                    # (B, T) squared z-distance
    k = min(T, max(1, int(round(share * T))))
    idx = d.topk(k, dim=1, largest=False).indices                          # (B, k)
    return torch.gather(x, 1, idx[..., None].expand(B, k, D)).mean(1, keepdim=True)   # (B, 1, D)


def moving_mean(s: torch.Tensor, width: int) -> torch.Tensor:
    """Test-time smoothing of one video's clip scores (ours, issue 22): s (T,) -> (T,), each clip
    the mean of the ``width`` clips centred on it (odd width; fewer at the ends, never padded)."""
    if width <= 1 or s.numel() < 2:
        return s
    h = width // 2
    c = torch.cat([s.new_zeros(1), s.cumsum(0)])                            # (T + 1,)
    i = torch.arange(s.numel(), device=s.device)
    lo, hi = (i - h).clamp_min(0), (i + h + 1).clamp_max(s.numel())
    return (c[hi] - c[lo]) / (hi - lo).to(s.dtype)


def similarity_adjacency(x: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """Feature-similarity graph of HL-Net: ``softmax_j(thr(cos(x_i, x_j)))``.

    x: (B, T, D) -> (B, T, T), each row sums to 1. Cosines below ``threshold`` become 0
    before the softmax (they still get weight exp(0), exactly as in HL-Net).
    """
    xn = F.normalize(x, dim=-1, eps=1e-8)                      # (B, T, D)
    cos = xn @ xn.transpose(1, 2)                               # (B, T, T)
    cos = torch.where(cos < threshold, torch.zeros_like(cos), cos)
    return torch.softmax(cos, dim=-1)


def centred_cosine(x: torch.Tensor) -> torch.Tensor:
    """Cosines of the segments' deviations from their video mean: x (B, T, D) -> (B, T, T)."""
    xc = x - x.mean(dim=1, keepdim=True)                        # (B, T, D)
    xn = F.normalize(xc, dim=-1, eps=1e-8)                      # (B, T, D)
    return xn @ xn.transpose(1, 2)                              # (B, T, T)


def centred_similarity_adjacency(x: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """Similarity graph of the deviations from the video mean, below-threshold pairs masked out.

    ``A[i, j] = softmax_j(cos(x_i - m, x_j - m))`` over the j with ``cos >= threshold`` (and j = i),
    0 elsewhere; ``m`` is the mean of x over its T segments. x: (B, T, D) -> (B, T, T), rows sum to 1.
    A segment like no other keeps only itself; a video-wide component (scene, video mean) cannot
    connect every segment to every other.
    """
    return masked_softmax_adjacency(centred_cosine(x), threshold)


def masked_softmax_adjacency(cos: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """``softmax_j(cos_ij)`` over the j with ``cos_ij >= threshold`` (and j = i): (B, T, T) -> (B, T, T)."""
    eye = torch.eye(cos.shape[-1], dtype=torch.bool, device=cos.device)
    keep = (cos >= threshold) | eye                             # (B, T, T)
    return torch.softmax(cos.masked_fill(~keep, float("-inf")), dim=-1)


def gated_proximity_adjacency(x: torch.Tensor) -> torch.Tensor:
    """Temporal proximity ``exp(-|i-j|/e)`` kept only between segments that deviate from their video
    mean in agreeing directions (centred cosine >= 0), rows normalised: x (B, T, D) -> (B, T, T).

    An edge-preserving smoother (as a bilateral filter): neighbours on the same side of an event's
    edge still average, so faint anomalies are denoised, but a strong anomaly does not spill into
    the normal clips around it, which the plain kernel does at test time (a node is one clip there).
    """
    return gated_proximity_from_cosine(centred_cosine(x))


def gated_proximity_from_cosine(cos: torch.Tensor) -> torch.Tensor:
    """The gated proximity graph from centred cosines (B, T, T); the gate carries no gradient."""
    T = cos.shape[-1]
    prox = proximity_adjacency(T, cos.device, cos.dtype)                       # (T, T)
    eye = torch.eye(T, dtype=torch.bool, device=cos.device)
    a = prox * ((cos.detach() >= 0) | eye)                                      # (B, T, T)
    return a / a.sum(dim=-1, keepdim=True)


def proximity_adjacency(T: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Temporal-proximity graph ``exp(-|i-j| / e)``, rows normalised to sum to 1. -> (T, T)."""
    idx = torch.arange(T, device=device, dtype=dtype)
    a = torch.exp(-(idx[:, None] - idx[None, :]).abs() / math.e)   # (T, T)
    return a / a.sum(dim=-1, keepdim=True)


class GraphConv(nn.Module):
    """``H' = A (H W) + b + H R``: one graph layer with a learned mix of the two adjacencies
    (without ``H R`` when ``residual`` is False)."""

    def __init__(self, in_dim: int, out_dim: int, adjacency: str = "learned", residual: bool = True):
        super().__init__()
        if adjacency not in ADJACENCIES:
            raise ValueError(f"adjacency must be one of {ADJACENCIES}, got {adjacency!r}")
        self.adjacency = adjacency
        self.weight = nn.Linear(in_dim, out_dim, bias=True)
        self.residual = nn.Linear(in_dim, out_dim, bias=False) if residual else None
        # sigmoid(0) = 0.5: start from the plain sum; only trained when adjacency == "learned".
        self.mix_logit = nn.Parameter(torch.zeros(()), requires_grad=adjacency == "learned")

    def mix(self) -> torch.Tensor:
        """Weight of the similarity graph in [0, 1]."""
        if self.adjacency == "similarity":
            return torch.ones(())
        if self.adjacency == "proximity":
            return torch.zeros(())
        return torch.sigmoid(self.mix_logit)

    def forward(self, h: torch.Tensor, a_sim: torch.Tensor, a_prox: torch.Tensor) -> torch.Tensor:
        # h: (B, T, in), a_sim: (B, T, T), a_prox: (T, T) or (B, T, T) -> (B, T, out)
        res = self.residual(h) if self.residual is not None else 0.0
        if self.adjacency == "none":
            return self.weight(h) + res
        w = self.mix().to(h.dtype)
        a = w * a_sim + (1 - w) * a_prox
        return a @ self.weight(h) + res


class AnomalyGCN(nn.Module):
    """FC + three graph layers (Sec. 2.1). ``forward`` returns every intermediate output.

    The buffers ``feature_mean`` / ``feature_std`` standardise the input per dimension; they are
    0 / 1 (identity) unless training set them (``--standardize``), and travel in the state dict so
    evaluation and detection apply the same transform.
    """

    def __init__(self, in_dim: int = 2048, fc_dim: int = 512, gcn_dims: tuple[int, int] = (128, 32),
                 dropout: float = 0.6, sim_threshold: float = 0.7, adjacency: str = "learned",
                 similarity: str = "centred", graph_features: str = "fc", proximity: str = "gated",
                 residual: bool = True, video_centre: bool = False, views: str = "sample",
                 centre: str = "median", normal_share: float = 0.1, smooth: int = 1):
        super().__init__()
        if centre not in CENTRES:
            raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
        if not 0 < normal_share <= 1:
            raise ValueError(f"normal_share must be in (0, 1], got {normal_share}")
        if smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"smooth must be an odd number of clips >= 1, got {smooth}")
        self.centre, self.normal_share, self.smooth = centre, normal_share, smooth
        if views not in VIEWS:
            raise ValueError(f"views must be one of {VIEWS}, got {views!r}")
        self.views = views
        self.video_centre = video_centre
        if proximity not in PROXIMITIES:
            raise ValueError(f"proximity must be one of {PROXIMITIES}, got {proximity!r}")
        self.proximity = proximity
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if graph_features not in GRAPH_FEATURES:
            raise ValueError(f"graph_features must be one of {GRAPH_FEATURES}, got {graph_features!r}")
        self.in_dim = in_dim
        self.sim_threshold = sim_threshold
        self.similarity = similarity
        self.graph_features = graph_features
        self.fc = nn.Linear(2 * in_dim if video_centre else in_dim, fc_dim)
        self.gcn1 = GraphConv(fc_dim, gcn_dims[0], adjacency, residual)
        self.gcn2 = GraphConv(gcn_dims[0], gcn_dims[1], adjacency, residual)
        self.gcn3 = GraphConv(gcn_dims[1], 1, adjacency, residual)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        if video_centre and centre == "normal":   # set by training: its normal videos' statistics
            self.register_buffer("normal_mean", torch.zeros(in_dim))
            self.register_buffer("normal_std", torch.ones(in_dim))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """The input transform of ``--standardize``: x (..., in_dim) -> (x - mean) / std."""
        return (x - self.feature_mean) / self.feature_std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: (B, T, in_dim)
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"expected features (B, T, {self.in_dim}), got {tuple(x.shape)}")
        x = self.standardize(x)
        if self.video_centre:
            ref = (normal_reference(x, self.normal_mean, self.normal_std, self.normal_share)
                   if self.centre == "normal" else None)                    # (B, 1, in_dim) or median
            x = video_centred_input(x, ref)                                  # (B, T, 2 in_dim)
        fc = F.relu(self.fc(x))                                             # (B, T, 512), before dropout
        src = x if self.graph_features == "input" else fc                   # never dropout-masked
        cos = centred_cosine(src) if self.similarity == "centred" or self.proximity == "gated" else None
        a_sim = (masked_softmax_adjacency(cos, self.sim_threshold) if self.similarity == "centred"
                 else similarity_adjacency(src, self.sim_threshold))        # (B, T, T)
        a_prox = (gated_proximity_from_cosine(cos) if self.proximity == "gated"       # (B, T, T)
                  else proximity_adjacency(x.shape[1], x.device, fc.dtype))            # or (T, T)
        g1 = F.relu(self.gcn1(self.drop(fc), a_sim, a_prox))                # (B, T, 128)
        g2 = F.relu(self.gcn2(self.drop(g1), a_sim, a_prox))                # (B, T, 32)
        logits = self.gcn3(self.drop(g2), a_sim, a_prox).squeeze(-1)        # (B, T)
        return {"fc": fc, "gcn1": g1, "gcn2": g2, "logits": logits, "scores": torch.sigmoid(logits)}


    def forward_views(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every view of every video: x (B, V, T, in_dim) -> ``forward``'s outputs for (B, T).

        ``views == "max"``: a segment's logit is its most anomalous view's (spatial MIL over the
        regions of a frame) and its intermediate outputs are that view's (what clustering sees);
        ``"sample"``: the views' probabilities averaged (logits of the mean; layers averaged).
        """
        B, V, T, D = x.shape
        out = self(x.reshape(B * V, T, D))
        out = {k: v.reshape(B, V, T, *v.shape[2:]) for k, v in out.items()}      # (B, V, T, ...)
        if self.views == "max":
            logits, best = out["logits"].max(dim=1)                                # (B, T)
            res = {k: torch.gather(v, 1, best[:, None, :, None].expand(B, 1, T, v.shape[-1])).squeeze(1)
                   for k, v in out.items() if v.dim() == 4}                        # (B, T, d)
            scores = torch.sigmoid(logits)
        else:
            scores = out["scores"].mean(dim=1)                                     # (B, T), unclamped
            p = scores.clamp(1e-7, 1 - 1e-7)
            logits = torch.log(p) - torch.log1p(-p)
            res = {k: v.mean(dim=1) for k, v in out.items() if v.dim() == 4}
        return {**res, "logits": logits, "scores": scores}

    @torch.no_grad()
    def clip_scores(self, x: torch.Tensor) -> torch.Tensor:
        """One video's clip scores: x (V, T, in_dim), its views -> (T,) by ``views``, smoothed over
        ``smooth`` clips (:func:`moving_mean`)."""
        return moving_mean(self.forward_views(x[None])["scores"][0], self.smooth)


def build_model(config: dict, in_dim: int) -> AnomalyGCN:
    """The model a run's settings describe (train's TrainConfig as a dict, or a checkpoint's config).

    Checkpoints from before ``similarity``/``graph_features`` existed were trained with HL-Net's
    literal graph on FC outputs, so those are the fallbacks.
    """
    return AnomalyGCN(in_dim=in_dim, dropout=config.get("dropout", 0.0),
                      adjacency=config.get("adjacency", "learned"),
                      similarity=config.get("similarity", "hlnet"),
                      graph_features=config.get("graph_features", "fc"),
                      proximity=config.get("proximity", "plain"),
                      residual=config.get("residual", True),
                      video_centre=config.get("video_centre", False),
                      centre=config.get("centre", "median"), normal_share=config.get("normal_share", 0.1),
                      smooth=config.get("smooth", 1),
                      views={"auto": "sample"}.get(config.get("views"), config.get("views") or "sample"))


class FCBaseline(nn.Module):
    """The FC floor for benchmarks: FC 2048->512->1 with no graph (not the paper's model)."""

    def __init__(self, in_dim: int = 2048, fc_dim: int = 512, dropout: float = 0.6):
        super().__init__()
        self.fc = nn.Linear(in_dim, fc_dim)
        self.out = nn.Linear(fc_dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fc = self.drop(F.relu(self.fc(x)))                                   # (B, T, 512)
        logits = self.out(fc).squeeze(-1)                                    # (B, T)
        return {"fc": fc, "logits": logits, "scores": torch.sigmoid(logits)}
