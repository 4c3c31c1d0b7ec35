"""Batch k-means (Sec. 2.2), the cross-batch memory (Sec. 2.3, Table 4) and the
clustering-guided pseudo-labels (Sec. 2.4, eq. 4).

K-means here has K = 2. Assignments are found on detached copies (they carry no gradient),
but the returned centres are means of the *live* features, so the batch clustering loss
``d = ||c1 - c2||`` back-propagates into the network. (Running the whole k-means on detached
features, as some public code does, yields a loss with no gradient at all.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CROSS_BATCH_WAYS = ("none", "1", "2", "3", "4")
PSEUDO_RULES = ("cosine", "mean", "minority", "far")
PSEUDO_LABELS = ("cluster", "ones", "random")


SUBSPACE_POINTS = 2048   # normal segments that estimate the normal subspace (every k-th one beyond this)


def normal_subspace(h_normal: torch.Tensor, dims: int) -> torch.Tensor:
    """The ``dims`` leading principal directions of the normal videos' segments -> (D', dims), detached.

    h_normal: (b, T, D') activations of the batch's normal videos, each video's mean already removed,
    so the directions are those along which segments vary *inside* normal videos (scene dynamics,
    camera, unusual-but-normal events). Eigenvectors of the uncentred scatter matrix: the product in
    the activations' dtype (in float64 it cost twice as much), the eigendecomposition in float64
    (float32's failed to converge on ReLU activations with many zero directions). Their sign does
    not matter (only the projector V V^T is used). Beyond ``SUBSPACE_POINTS`` segments (32 normal
    videos at T = 150 give 4800) every k-th one is used: the leading directions need no more, and
    the product is the step's main cost.
    """
    pts = h_normal.detach().reshape(-1, h_normal.shape[-1])             # (b * T, D')
    pts = pts[:: max(1, -(-pts.shape[0] // SUBSPACE_POINTS))]           # every k-th segment, <= SUBSPACE_POINTS
    _, vecs = torch.linalg.eigh((pts.T @ pts).double())                 # ascending eigenvalues
    return vecs[:, -dims:].to(h_normal.dtype)                           # (D', dims)


def remove_subspace(h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``h - (h V) V^T``: h (..., D') without its components along the orthonormal columns of V (D', r)."""
    return h - (h @ basis) @ basis.T


def clustering_input(h: torch.Tensor, center: bool = True, normal_dims: int = 0, n_normal: int = 0) -> torch.Tensor:
    """What batch k-means clusters: a layer's activations (B, T, D') -> L2-normalised (B, T, D').

    ``h`` is taken *before* dropout (a dropout-masked copy scatters the points so much that K=2
    k-means finds nothing). With ``center`` each video's mean over its T segments is removed first
    (our choice, ``--cluster-center video``): without it, segments of one video sit together and K=2
    k-means splits the batch by video or scene, which says nothing about anomalies (README, "How
    the paper's equations act here"). With ``normal_dims`` > 0 (ours, ``--normal-subspace``) the
    ``normal_dims`` leading directions of variation inside the batch's first ``n_normal`` (normal)
    videos are then removed from every segment (:func:`normal_subspace`): what varies inside normal
    videos is not what makes an anomaly, and left in, it is what K=2 k-means splits on. At most half
    the layer's width and half the rank of the normal segments' scatter (``n_normal * (T - 1) / 2``)
    are removed, so a narrow layer or a small batch keeps something of every segment. Gradients
    flow through all three operations (the basis itself is held fixed).
    """
    if center:
        h = h - h.mean(dim=1, keepdim=True)                           # (B, T, D')
    if normal_dims > 0:
        dims = min(normal_dims, h.shape[-1] // 2, n_normal * (h.shape[1] - 1) // 2)   # see above
        if dims > 0:
            h = remove_subspace(h, normal_subspace(h[:n_normal], dims))
    return F.normalize(h, dim=-1, eps=1e-8)


def random_init(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two distinct random points of x (N, D) as initial centres -> (2, D). The paper's first epoch."""
    idx = torch.randperm(x.shape[0], generator=generator, device="cpu")[:2].to(x.device)
    return x[idx].detach().clone()


def farthest_init(x: torch.Tensor) -> torch.Tensor:
    """Deterministic init for clustering a memory: the first point and the point farthest from it."""
    first = x[0]
    far = x[torch.argmax(((x - first) ** 2).sum(-1))]
    return torch.stack([first, far]).detach().clone()


def cluster_means(pts: torch.Tensor, assign: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Mean of the points of each of the 2 clusters: pts (N, D), assign (N,) in {0, 1} -> (2, D).

    One matrix product with the one-hot assignment (no per-cluster indexing); a cluster with no
    point takes its row of ``fallback`` (2, D), detached.
    """
    onehot = F.one_hot(assign, 2).to(pts.dtype)                          # (N, 2)
    counts = onehot.sum(0)[:, None]                                      # (2, 1)
    means = (onehot.t() @ pts) / counts.clamp_min(1)                     # (2, D)
    return torch.where(counts > 0, means, fallback.detach().to(pts.dtype))


def nearest_centre(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearer of two centres: x (N, D), c (2, D) -> (N,) long, ties to 0.

    ``||x - c0||^2 <= ||x - c1||^2`` iff ``x . (c0 - c1) >= (||c0||^2 - ||c1||^2) / 2``: one
    matrix-vector product instead of all pairwise distances (14x faster than ``cdist`` at UCF scale).
    """
    w = c[0] - c[1]                                                      # (D,)
    b = 0.5 * (c[0].pow(2).sum() - c[1].pow(2).sum())
    return (x @ w < b).long()


def kmeans2(x: torch.Tensor, init: torch.Tensor, iters: int = 10,
            extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means with K=2 (Lloyd's algorithm).

    x: (N, D) live features; init: (2, D) initial centres; extra: (M, D) constant points that take
    part in the clustering (cross-batch way 4) but are not returned in the assignment.
    Returns ``assign`` (N,) long in {0, 1} (no gradient) and ``centres`` (2, D), each the mean of
    the live points (and extra points) assigned to it, so gradients reach x. A cluster that ends
    empty keeps its last centre as a constant.
    """
    pts = x if extra is None else torch.cat([x, extra.to(x)], 0)        # (N + M, D), memory on x's device
    with torch.no_grad():
        c = init.detach().to(pts.dtype).clone()                          # (2, D)
        data = pts.detach()
        for _ in range(iters):
            new = cluster_means(data, nearest_centre(data, c), c)
            if torch.allclose(new, c):
                break
            c = new
        assign_all = nearest_centre(data, c)                             # (N + M,)
    centres = cluster_means(pts, assign_all, c)                          # (2, D), live: gradients reach x
    return assign_all[: x.shape[0]], centres                             # (N,), (2, D)


def pseudo_labels(scores: torch.Tensor, cluster_labels: torch.Tensor, rule: str = "cosine") -> torch.Tensor:
    """Eq. 4: keep each video's cluster labels y^c, or flip them, whichever agrees better with its scores.

    scores: (..., T) in [0, 1]; cluster_labels: (..., T) in {0, 1}; one decision per video (row).
    ``rule="cosine"`` (the paper): ``S1 = cos(s, y^c)``, ``S2 = cos(s, 1 - y^c)``; y^c if S1 > S2 else
    1 - y^c. The cosine with an all-zero vector counts as 0. ``cos(s, y) = sum_{y=1} s / (|s| sqrt(n_1))``
    favours the larger cluster: a cluster of share p wins against its complement only if its mean
    score is ``sqrt((1-p)/p)`` times the other's (1.9x at p = 0.22). ``rule="mean"`` (ours): label 1
    goes to the cluster of higher mean score, whatever its size; a video wholly in one cluster is
    labelled 1 throughout when its mean score is >= 0.5, else 0. ``rule="minority"`` (ours): the
    scores are not used; label 1 goes to the smaller of the two clusters of the whole batch (all rows
    together; ties to cluster 1), on the prior that anomalies fill the lesser part of abnormal videos
    (the prior of eq. 2's k = T/8 + 1). Returns float (..., T).
    """
    s = scores.detach().float()
    y = cluster_labels.float()
    if rule == "minority":
        return minority_pseudo_labels(cluster_labels)
    if rule == "mean":
        n1 = y.sum(-1)                                                     # (...,)
        n0 = y.shape[-1] - n1
        m1 = (s * y).sum(-1) / n1.clamp_min(1)
        m0 = (s * (1 - y)).sum(-1) / n0.clamp_min(1)
        keep = m1 >= m0
        single = (n1 == 0) | (n0 == 0)
        out = torch.where(keep[..., None], y, 1 - y)
        return torch.where(single[..., None], (s.mean(-1, keepdim=True) >= 0.5).float().expand_as(y), out)
    s1 = F.cosine_similarity(s, y, dim=-1, eps=1e-8)                      # (...,)
    s2 = F.cosine_similarity(s, 1 - y, dim=-1, eps=1e-8)
    return torch.where((s1 > s2)[..., None], y, 1 - y)


def minority_pseudo_labels(cluster_labels: torch.Tensor) -> torch.Tensor:
    """1 for the segments of the batch's smaller cluster: cluster_labels (..., T) in {0, 1} -> float (..., T).

    One decision for the whole batch, because batch k-means gives cluster ids that mean the same thing in
    every video. Ties (exactly half the segments in each) go to cluster 1.
    """
    y = cluster_labels.float()
    return y if float(y.mean()) <= 0.5 else 1 - y


def novelty(h: torch.Tensor, n_normal: int) -> torch.Tensor:
    """How far each segment lies from the batch's normal videos: h (B, T, D') -> (B, T), detached.

    ``||h_t - m||`` with ``m`` the mean activation over all segments of the first ``n_normal`` (normal)
    videos, in the clustered layer as it is (no centring, no normalisation). What the ``far`` rule of
    eq. 4 compares between the two clusters.
    """
    h = h.detach()
    m = h[:n_normal].reshape(-1, h.shape[-1]).mean(0)                       # (D',)
    return torch.linalg.vector_norm(h - m, dim=-1)                          # (B, T)


def far_pseudo_labels(cluster_labels: torch.Tensor, nov: torch.Tensor) -> torch.Tensor:
    """1 for the segments of the cluster lying farther from the normal videos: (..., T) -> float (..., T).

    cluster_labels: (..., T) in {0, 1} (batch k-means ids, the same in every video of the batch);
    nov: (..., T) each segment's :func:`novelty`. Label 1 goes to the cluster whose segments have the
    larger mean novelty, one decision for the whole batch (ties to cluster 1). Unlike ``minority``
    it assumes nothing about how much of an abnormal video is anomalous, and unlike eq. 4's cosine
    it does not ask the network's scores, which say nothing before training.
    """
    y = cluster_labels.float()
    n1, n0 = y.sum(), (1 - y).sum()
    if n1 == 0 or n0 == 0:                                                  # one cluster: no contrast
        return torch.zeros_like(y)
    m1 = (nov * y).sum() / n1
    m0 = (nov * (1 - y)).sum() / n0
    return y if bool(m1 >= m0) else 1 - y


def random_pseudo_labels(shape, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Control for eq. 4: independent Bernoulli(rate) labels of the given shape (float, on the CPU)."""
    return (torch.rand(shape, generator=generator) < rate).float()


def expand_scores(scores: torch.Tensor, pseudo: torch.Tensor, video_labels: torch.Tensor,
                  alpha: float) -> torch.Tensor:
    """Eq. 5: ``s = min(alpha * s~, 1)`` where the video is abnormal and the pseudo-label is 1; else ``s~``.

    scores: (B, T); pseudo: (B, T) in {0, 1}; video_labels: (B,) in {0, 1}. Training only.
    This is the reference form; training applies the same rule in log space inside
    ``losses.kmax_loss_logits`` (a test checks the two agree).
    """
    boost = (pseudo > 0.5) & (video_labels[:, None] > 0.5)              # (B, T)
    return torch.where(boost, torch.clamp(alpha * scores, max=1.0), scores)


class CrossBatchMemory:
    """Initial centres for one kind of video (normal or abnormal), by a cross-batch way (Table 4).

    - ``none``: two random segments of the batch, every batch (the paper's baseline).
    - ``1`` (default, Sec. 2.3): during epoch t, store each batch's two centres; at epoch t+1 cluster
      that store into two centres and start every batch's k-means from them.
    - ``2``: start from the centres of the previous batch.
    - ``3``: store the centres of all previous batches (all epochs) and start from two centres
      obtained by clustering that store again, every batch.
    - ``4``: the centres of all batches of the previous epoch join each batch's clustering as extra
      (constant) points; the start is random as in ``none``.
    The first epoch of ways 1 and 4 (and the first batch of 2 and 3) starts at random.
    """

    def __init__(self, way: str = "1", iters: int = 10):
        if way not in CROSS_BATCH_WAYS:
            raise ValueError(f"cross-batch way must be one of {CROSS_BATCH_WAYS}, got {way!r}")
        self.way = way
        self.iters = iters
        self.current: list[torch.Tensor] = []     # centres stored in this epoch, each (2, D)
        self.previous: list[torch.Tensor] = []    # centres stored in the previous epoch
        self.all: list[torch.Tensor] = []         # every centre ever stored (way 3)
        self.epoch_init: torch.Tensor | None = None

    def init_for(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial centres (2, D) for clustering the batch points x (N, D)."""
        if self.way == "1" and self.epoch_init is not None:
            return self.epoch_init.to(x)
        if self.way == "2" and self.all:
            return self.all[-1].to(x)
        if self.way == "3" and self.all:
            store = torch.cat(self.all, 0)
            return kmeans2(store, farthest_init(store), self.iters)[1].to(x)
        return random_init(x, generator)

    def extra_points(self, like: torch.Tensor | None = None) -> torch.Tensor | None:
        """Way 4: the previous epoch's centres (2m, D), clustered along with the batch; else None.

        The memory lives on the CPU; with ``like`` the points come on its device and dtype (the batch's).
        """
        if self.way == "4" and self.previous:
            extra = torch.cat(self.previous, 0)
            return extra if like is None else extra.to(like)
        return None

    def store(self, centres: torch.Tensor) -> None:
        """Record one batch's two centres (2, D) (detached)."""
        if self.way == "none":
            return
        c = centres.detach().float().cpu()
        self.current.append(c)
        if self.way in ("2", "3"):
            self.all.append(c)

    def end_epoch(self) -> None:
        """Close epoch t: way 1 clusters its store into the next epoch's initial centres."""
        if self.current and self.way == "1":
            store = torch.cat(self.current, 0)                                      # (2m, D)
            self.epoch_init = kmeans2(store, farthest_init(store), self.iters)[1].detach()
        self.previous, self.current = self.current, []

    def state_dict(self) -> dict:
        """Tensors and lists only, so a checkpoint loads with ``weights_only=True``."""
        return {"way": self.way, "current": list(self.current), "previous": list(self.previous),
                "all": list(self.all), "epoch_init": self.epoch_init}

    def load_state_dict(self, state: dict) -> None:
        self.way = state["way"]
        self.current = list(state["current"])
        self.previous = list(state["previous"])
        self.all = list(state["all"])
        self.epoch_init = state["epoch_init"]
