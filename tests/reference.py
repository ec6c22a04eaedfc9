"""Pure-Python/numpy references that the kernels are tested against and benchmarked against."""

from __future__ import annotations

import math

import numpy as np
import torch

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter: np.ndarray, key0: int, key1: int) -> np.ndarray:
    """Philox4x32-10 on rows of uint32 counters [N, 4], written from Salmon et al. (SC'11)."""
    c = counter.astype(np.uint64)
    k0, k1 = np.uint64(key0), np.uint64(key1)
    x0, x1, x2, x3 = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    for _ in range(10):
        p0, p1 = M0 * x0, M1 * x2
        x0, x1, x2, x3 = ((p1 >> np.uint64(32)) ^ x1 ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ x3 ^ k1, p0 & MASK)
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return np.stack([x0, x1, x2, x3], axis=1).astype(np.uint32)


def philox_uniform(n: int, seed: int, offset: int) -> np.ndarray:
    """Reference of ops.philox_uniform: word i % 4 of block (i // 4, offset), key seed, top 24 bits."""
    seed, offset = seed % 2**64, offset % 2**64
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    counter = np.stack(
        [blocks & MASK, blocks >> np.uint64(32), np.full_like(blocks, offset & 0xFFFFFFFF), np.full_like(blocks, offset >> 32)],
        axis=1,
    )
    words = philox4x32_10(counter, seed & 0xFFFFFFFF, seed >> 32).reshape(-1)[:n]
    return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def rule_bins(rule, n: int) -> int:
    """SPEC section 2's bin count for ``n`` values, from the formulas themselves: an int as is,
    "sturges" ceil(log2 n) + 1, "sqrt" ceil(sqrt n), "rice" ceil(2 n^(1/3)).

    Not numpy's rule strings: numpy's "sturges" is ceil(ptp / (ptp / (log2 n + 1))), which
    rounds up to one bin more for some data (n = 64, 1024, 4096; "sqrt" at n = 49, 121, ...).
    """
    if isinstance(rule, int):
        return rule
    exact = {"sturges": math.log2(n) + 1, "sqrt": math.sqrt(n), "rice": 2 * float(np.cbrt(n))}[rule]
    return math.ceil(exact)


def histogram_composite(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a user writes without the library: min/max, torch.histc, linspace edges."""
    lo, hi = torch.aminmax(values)
    lo, hi = lo.item(), hi.item()
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    return counts, torch.linspace(lo, hi, bins + 1, device=values.device)


def lane_tree_sum(values: torch.Tensor, lanes: int = 256) -> torch.Tensor:
    """Sum in the order of csrc/common/selection.h: lane t adds slots t, t+lanes, ... in turn,
    then a binary tree over the lanes."""
    n = values.numel()
    padded = torch.zeros((n + lanes - 1) // lanes * lanes, dtype=torch.float64, device=values.device)
    padded[:n] = values
    partial = torch.zeros(lanes, dtype=torch.float64, device=values.device)
    for row in padded.view(-1, lanes):
        partial = partial + row
    s = lanes // 2
    while s:
        partial = partial[:s] + partial[s : 2 * s]
        s //= 2
    return partial[0]


def numpy_edges(first: float, last: float, k: int, device=None) -> torch.Tensor:
    """numpy.histogram's float64 edges: linspace(first, last, k + 1) after the empty-range expansion."""
    if first == last:
        first, last = first - 0.5, last + 0.5
    step = (last - first) / k
    j = torch.arange(k + 1, dtype=torch.float64, device=device)
    edges = (j * step if step != 0 else j / k * (last - first)) + first
    edges[-1] = last
    return edges


def bin_of(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """edges[j] <= v < edges[j+1], the last bin closed; -1 outside (and for NaN)."""
    k = edges.numel() - 1
    b = torch.bucketize(values, edges, right=True) - 1
    b = torch.where(values == edges[-1], torch.full_like(b, k - 1), b)
    return torch.where((values >= edges[0]) & (values <= edges[-1]), b, torch.full_like(b, -1))


class HistogramSelectReference:
    """Pure-PyTorch histogram_select with its own history, step by step as SPEC section 2 says,
    bit for bit (Philox draws, the kernel's summation order). The benchmarks check the fused op
    against it before timing the op against a plain torch composite."""

    def __init__(self, capacity: int, device=None):
        self.capacity = capacity
        self.history = torch.zeros(capacity, dtype=torch.float64, device=device)
        self.length = 0
        self.pos = 0

    def __call__(self, losses, *, rule="pmf", bins="sturges", threshold=0.1, clip_sigma=1.0, clip="clamp",
                 keep_fraction=0.3, keep="bernoulli", beta=2.0, seed=0, offset=0, keys=None):
        losses = losses.double()
        finite = torch.isfinite(losses)
        new = losses[finite]
        count = new.numel()
        new = new[-self.capacity :]  # a batch longer than the buffer leaves only its last values
        slots = (self.pos + (count - new.numel()) + torch.arange(new.numel(), device=new.device)) % self.capacity
        self.history[slots] = new
        self.pos = (self.pos + count) % self.capacity
        self.length = min(self.length + count, self.capacity)
        h = self.history[: self.length]
        mode = clip if clip_sigma is not None else None
        lo = hi = None
        if mode is not None:
            mean = lane_tree_sum(h) / self.length
            d = h - mean
            sd = torch.sqrt(lane_tree_sum(d * d) / self.length)
            lo, hi = mean - clip_sigma * sd, mean + clip_sigma * sd
        if mode == "clamp":
            hc, lc, inside = h.clamp(lo, hi), losses.clamp(lo, hi), finite
        elif mode == "drop":
            hc, lc = h[(h >= lo) & (h <= hi)], losses
            inside = finite & (losses >= lo) & (losses <= hi)
        else:
            hc, lc, inside = h, losses, finite
        n = hc.numel()
        p = torch.zeros_like(losses)
        if n and rule == "pmf":
            k = rule_bins(bins, n)
            edges = numpy_edges(hc.min().item(), hc.max().item(), k, device=h.device)
            counts = torch.bincount(bin_of(hc, edges), minlength=k)
            b = bin_of(lc, edges)
            p = torch.where(inside & (b >= 0), counts[b.clamp_min(0)].double() / n, p)
        elif n:
            left = (hc[None, :] < lc[:, None]).sum(1)
            right = (hc[None, :] <= lc[:, None]).sum(1)
            pct = (left + right + (left < right).long()).double() / (2.0 * n)
            if float(beta).is_integer() and beta <= 64:  # whole exponents: repeated products, in order
                powered = torch.ones_like(pct)
                for _ in range(int(beta)):
                    powered = powered * pct
            else:  # Python's float ** is C's pow, as the kernel's (torch's vectorised pow may differ)
                powered = torch.tensor([x**beta for x in pct.tolist()], dtype=torch.float64, device=pct.device)
            p = torch.where(inside, powered, p)
        positions = torch.arange(losses.numel()) if keys is None else keys.cpu()
        u = torch.from_numpy(philox_words(positions.numpy(), seed, offset)).to(losses.device)
        u = (u >> 8).double() * 2.0**-24
        if rule == "cdf":
            return u < p, p
        cand = p > threshold
        if keep == "bernoulli":
            return cand & (u < keep_fraction), p
        idx = cand.nonzero().flatten().tolist()
        if keep == "fraction":
            order = sorted(idx, key=lambda i: (u[i].item(), i))
        else:
            order = sorted(idx, key=lambda i: (-p[i].item(), u[i].item(), i))
        m = math.ceil(keep_fraction * len(idx))
        mask = torch.zeros_like(cand)
        mask[order[:m]] = True
        return mask, p


def philox_words(elements: np.ndarray, seed: int, offset: int) -> np.ndarray:
    """Word 0 of block `element` (counter = element, offset): element_uniform's draw 0, as int64."""
    seed, offset = seed % 2**64, offset % 2**64
    e = elements.astype(np.uint64)
    counter = np.stack(
        [e & MASK, e >> np.uint64(32), np.full_like(e, offset & 0xFFFFFFFF), np.full_like(e, offset >> 32)], axis=1
    )
    return philox4x32_10(counter, seed & 0xFFFFFFFF, seed >> 32)[:, 0].astype(np.int64)


def argmax_mismatch_reference(logits: torch.Tensor, labels: torch.Tensor, margin=None):
    """What a user writes: argmax != label, plus the softmax top-2 rule; also returns the gap."""
    keep = logits.argmax(1) != labels
    z = logits.double()
    top = torch.cat([z, torch.full_like(z[:, :1], -math.inf)], 1).topk(2, dim=1).values
    scaled_sum = torch.exp(z - top[:, :1]).sum(1)
    gap = (1 - torch.exp(top[:, 1] - top[:, 0])) / scaled_sum
    gap = torch.where(torch.isfinite(top[:, 0]), gap, torch.full_like(gap, math.nan))
    if margin is not None:
        keep = keep | (gap <= margin)
    return keep, gap


def element_below(seed: int, offset: int, i: int, pair: int, m: int) -> int:
    """scale_below(element_bits(seed, offset, i, pair), m) of philox.h: word pair `pair` of block i, times m, high 64 bits."""
    seed, offset = seed % 2**64, offset % 2**64
    counter = np.array([[i & 0xFFFFFFFF, i >> 32, offset & 0xFFFFFFFF, offset >> 32]], dtype=np.uint64)
    w = philox4x32_10(counter, seed & 0xFFFFFFFF, seed >> 32)[0]
    r = (int(w[2 * pair]) << 32) | int(w[2 * pair + 1])
    return (r * m) >> 64


def partial_shuffle(values: list, k: int, seed: int, offset: int, pair: int) -> None:
    n = len(values)
    for i in range(k):
        j = i + element_below(seed, offset, i, pair, n - i)
        values[i], values[j] = values[j], values[i]


def partition_resample_reference(perm: list, size: int, k: int, seed: int, offset: int) -> list:
    """Swap k random members of perm[:size] with k random members of perm[size:] (pure Python)."""
    a, b = perm[:size], perm[size:]
    partial_shuffle(a, k, seed, offset, 0)
    partial_shuffle(b, k, seed, offset, 1)
    a[:k], b[:k] = b[:k], a[:k]
    return a + b


def ordered_table_sum(values: torch.Tensor, tile: int = 4096, lanes: int = 256) -> torch.Tensor:
    """Sum in the order of csrc/common/table.h: each tile of `tile` values in the lane/tree
    order, then the tile sums in that order again."""
    n = values.numel()
    tiles = max(1, (n + tile - 1) // tile)
    padded = torch.zeros(tiles * tile, dtype=torch.float64)
    padded[:n] = values.double()
    rows = padded.view(tiles, tile // lanes, lanes)
    partial = torch.zeros(tiles, lanes, dtype=torch.float64)
    for r in range(tile // lanes):
        partial = partial + rows[:, r, :]
    s = lanes // 2
    while s:
        partial = partial[:, :s] + partial[:, s : 2 * s]
        s //= 2
    return lane_tree_sum(partial[:, 0], lanes)


def sturges_bins(n: int) -> int:
    """ceil(log2 n) + 1, from the float definition (exact for the sizes the tests use)."""
    return math.ceil(math.log2(n)) + 1 if n > 1 else 1


def table_select_reference(scores, seen_epoch, epoch, rule="mean", prune=0.5, staleness=3, bins="sturges",
                           threshold=0.1, beta=2.0, reweight=None, seed=0, offset=0):
    """SPEC section 8's selection, step by step in torch/numpy: (kept indices, weights)."""
    if reweight is None:
        reweight = rule in ("mean", "pmf")
    n = scores.numel()
    seen = seen_epoch.long()
    forced = (seen < 0) | (epoch - seen > staleness)
    scored = seen >= 0
    u = torch.from_numpy(philox_uniform(n, seed, offset)).double()
    q = torch.full((n,), 1.0 - prune, dtype=torch.float64)
    if rule == "mismatch":
        candidate = scores == 1
    else:
        s = scores.double()
        values = s[scored]
        if rule == "mean":
            mean = ordered_table_sum(torch.where(scored, s, torch.zeros_like(s))) / max(values.numel(), 1)
            candidate = s < mean
        elif rule == "pmf":
            candidate = torch.zeros(n, dtype=torch.bool)
            if values.numel():
                k = sturges_bins(values.numel()) if bins == "sturges" else bins
                counts, edges = np.histogram(values.numpy(), bins=k)
                dense = torch.from_numpy(counts / values.numel() > threshold)
                b = bin_of(s, torch.from_numpy(edges))
                candidate = (b >= 0) & dense[b.clamp_min(0)]
        else:
            ordered = values.sort().values
            left = torch.searchsorted(ordered, s, right=False)
            right = torch.searchsorted(ordered, s, right=True)
            pct = (left + right + (left < right).long()).double() / (2.0 * max(values.numel(), 1))
            if float(beta).is_integer():
                q = torch.ones_like(pct)
                for _ in range(int(beta)):
                    q = q * pct
            else:
                q = pct**beta
            candidate = torch.ones(n, dtype=torch.bool)
    candidate = candidate & ~forced
    keep = ~candidate | (u < q)
    weights = torch.where(candidate & torch.tensor(reweight), (1.0 / q).float(), torch.ones(n))
    kept = keep.nonzero().flatten()
    return kept, weights[kept]


def table_record_reference(n, records):
    """The table after replaying records [(indices, losses, logits or None, targets, epoch)] in
    order, each index keeping its last record: (scores float64, correct int8, seen_epoch int32)."""
    scores = [0.0] * n
    correct = [-1] * n
    seen = [-1] * n
    for indices, losses, logits, targets, epoch in records:
        right = None if logits is None else (logits.argmax(1) == targets).tolist()
        for r, i in enumerate(indices.tolist()):
            scores[i] = float(losses[r])
            seen[i] = epoch
            if right is not None:
                correct[i] = int(right[r])
    return (torch.tensor(scores, dtype=torch.float64), torch.tensor(correct, dtype=torch.int8),
            torch.tensor(seen, dtype=torch.int32))


def philox_pairs(n: int, seed: int, offset: int) -> list:
    """The 64-bit word pair 0 of Philox blocks 0..n-1 (element_bits(seed, offset, j, 0)), as Python ints."""
    seed, offset = seed % 2**64, offset % 2**64
    blocks = np.arange(n, dtype=np.uint64)
    counter = np.stack(
        [blocks & MASK, blocks >> np.uint64(32), np.full_like(blocks, offset & 0xFFFFFFFF), np.full_like(blocks, offset >> 32)],
        axis=1,
    )
    w = philox4x32_10(counter, seed & 0xFFFFFFFF, seed >> 32).astype(np.uint64)
    return ((w[:, 0] << np.uint64(32)) | w[:, 1]).tolist()


def weighted_sample_reference(weights: torch.Tensor, num_samples: int, seed: int, offset: int):
    """SPEC section 4's weighted sampling with replacement, exactly, with Python integers: q_i =
    floor(w_i 2^s) (s: the largest scale with sum q < 2^62, found from max(w) and then the first
    total), draw j = floor(bits_j * T / 2^64), index = the i with C_(i-1) <= u < C_i.
    Returns (indices int64, probs float64 = q_i / T)."""
    w = [float(v) for v in weights.double().tolist()]
    n = len(w)
    frac = [math.frexp(v) for v in w]  # v = f * 2^e exactly

    def fixed(s):  # floor(v * 2^s) exactly: f * 2^53 is an integer
        out = []
        for f, e in frac:
            m, shift = int(f * 2**53), e - 53 + s
            out.append(m << shift if shift >= 0 else m >> -shift)
        return out

    e_max = math.frexp(max(w))[1]
    s1 = 62 - n.bit_length() - e_max
    t1 = sum(fixed(s1))
    s = s1 + max(0, 62 - (t1 + n).bit_length())
    q = fixed(s)
    total = sum(q)
    cumulative = np.cumsum(np.array(q, dtype=np.uint64))  # exact: total < 2^63
    u = np.array([(b * total) >> 64 for b in philox_pairs(num_samples, seed, offset)], dtype=np.uint64)
    idx = np.searchsorted(cumulative, u, side="right")
    probs = [float(q[i]) / float(total) for i in idx.tolist()]  # each rounded to float64, then divided
    return torch.from_numpy(idx.astype(np.int64)), torch.tensor(probs, dtype=torch.float64)


def gradnorm_composite(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What a user writes: ||softmax(z) - onehot(y)||_2 per row, in the dtype of the logits. For
    a confident row (p_y near 1) 1 - p_y cancels: the result is off by up to eps / (1 - p_y)."""
    p = torch.softmax(logits, 1)
    return (p - torch.nn.functional.one_hot(labels.long(), logits.shape[1]).to(p.dtype)).norm(dim=1)


def gradnorm_scores_reference(logits: torch.Tensor, labels: torch.Tensor, groups=None, num_groups=None):
    """The scores in float64 without the composite's cancellation: with e_j = exp(z_j - max z),
    Z = sum e_j, S = sum_(j != y) e_j, Q = sum_(j != y) e_j^2, the norm is sqrt(S^2 + Q) / Z
    (1 - p_y = S / Z exactly); then the per-group sums of the squares and counts (in float64:
    close to the kernel's, whose exact order ordered_group_sums gives).
    tests/test_importance.py checks it against the float64 composite where that does not cancel."""
    z = logits.double()
    e = torch.exp(z - z.max(1, keepdim=True).values) if z.shape[0] else z
    other = e.scatter(1, labels.long()[:, None], 0.0)
    scores = torch.sqrt(other.sum(1) ** 2 + (other * other).sum(1)) / e.sum(1)
    g = (labels if groups is None else groups).long()
    num_groups = z.shape[1] if num_groups is None else num_groups
    sums = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, g, scores * scores)
    return scores, sums, torch.bincount(g, minlength=num_groups)


def centroid_distances_reference(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """What a user writes: float64 class means with index_add_ and bincount, then distances."""
    x = embeddings.double()
    y = labels.long()
    counts = torch.bincount(y, minlength=num_classes)
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, y, x)
    centroids = sums / counts.clamp(min=1)[:, None]  # 0 for an empty class
    return centroids, ((x - centroids[y]) ** 2).sum(1), counts


def ordered_group_sums(values: torch.Tensor, groups: torch.Tensor, num_groups: int, chunk: int = 256):
    """Per-group sums of values ([n] or [n, d]) in the kernels' order (csrc/common/group_sums.h),
    with torch ops in the values' dtype: each group's rows in increasing index order, cut into
    chunks of `chunk` rows, each chunk added row by row from 0, the chunk sums added in order
    from 0 (0 for an empty group)."""
    sums = torch.zeros((num_groups, *values.shape[1:]), dtype=values.dtype)
    for k in range(num_groups):
        rows = values[(groups == k).nonzero().flatten()]  # increasing index order
        if rows.shape[0] == 0:
            continue
        chunks = math.ceil(rows.shape[0] / chunk)
        padded = torch.zeros((chunks * chunk, *values.shape[1:]), dtype=values.dtype)
        padded[: rows.shape[0]] = rows
        padded = padded.view(chunks, chunk, *values.shape[1:])
        part = torch.zeros((chunks, *values.shape[1:]), dtype=values.dtype)
        for r in range(chunk):  # adding +0 for the padding changes nothing
            part = part + padded[:, r]
        for q in range(chunks):
            sums[k] = sums[k] + part[q]
    return sums


def ordered_centroid_distances(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int,
                               chunk: int = 256, lanes: int = 32):
    """centroid_distances in its documented summation order, with torch elementwise ops in the
    accumulation dtype (float32, float64 for float64): each class's sum in the order of
    ordered_group_sums, divided by the count (0 when empty); each row's (x - c)^2 added by
    `lanes` lanes (lane t: dims t, t + lanes, ...) and a binary tree over the lanes."""
    acc = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    x = embeddings.to(acc)
    y = labels.long()
    n, d = x.shape
    counts = torch.bincount(y, minlength=num_classes)
    centroids = ordered_group_sums(x, y, num_classes, chunk) / counts.clamp(min=1).to(acc)[:, None]  # 0 when empty
    diff = x - centroids[y]
    sq = diff * diff
    width = math.ceil(d / lanes) * lanes
    sq = torch.cat([sq, torch.zeros(n, width - d, dtype=acc)], 1).view(n, width // lanes, lanes)
    lane = torch.zeros(n, lanes, dtype=acc)
    for b in range(width // lanes):
        lane = lane + sq[:, b]
    s = lanes // 2
    while s > 0:
        lane = torch.cat([lane[:, :s] + lane[:, s : 2 * s], lane[:, s:]], 1)
        s //= 2
    return centroids, lane[:, 0].clone(), counts


def prototype_selection_reference(sq_distances: torch.Tensor, labels: torch.Tensor, num_classes: int, fraction: float):
    """IDS's subsets, one class at a time in plain Python: per class of L samples, k =
    ceil(fraction * L) exactly (fraction read as the decimal it prints as); EASY the k nearest,
    HARD the k farthest plus the prototype (the nearest); ties to the lower index."""
    from fractions import Fraction

    f = Fraction(repr(float(fraction)))
    d = sq_distances.tolist()
    y = labels.tolist()
    easy, hard, prototypes = [], [], []
    for c in range(num_classes):
        members = [i for i in range(len(y)) if y[i] == c]
        if not members:
            prototypes.append(-1)
            continue
        k = math.ceil(f * len(members))
        near = sorted(members, key=lambda i: (d[i], i))
        far = sorted(members, key=lambda i: (-d[i], i))
        prototypes.append(near[0])
        easy += near[:k]
        hard += sorted(set(far[:k]) | {near[0]})
    return sorted(easy), sorted(hard), prototypes
