"""IDS, Intellectual Data Selection (seed 003, Alg. 2): train on the samples nearest their class
prototype, then on the farthest.

The dataset is embedded once (any ``nn.Module``; by default the input of the model's last
``nn.Linear``, i.e. the model without its classifier head), every class's centroid is its mean
embedding (K-Means with one cluster per class converges to it) and every sample is ranked by its
squared Euclidean distance to its class centroid, in one fused op (``ops.centroid_distances``).
Per class the ceil(``fraction`` * L_c) nearest samples form the EASY subset, the as many farthest
samples plus the class prototype (the nearest sample) the HARD subset. A :class:`PrototypeSelection`
is the epoch sampler: EASY before ``switch_epoch`` and HARD from it (the paper's gamma).
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Optional, Union

import torch
from torch import Tensor, nn

from . import distributed, ops
from ._validate import require_index_range, require_int, require_seed
from .batches import check_loader, check_model, is_sequential, split_batch
from .sampling import ResumableSampler, resolve_replicas, shard, sharded_length

__all__ = ["PrototypeSelection", "embed_dataset", "select_prototypes"]

# Philox offset of epoch e's shuffle: _SHUFFLE_OFFSET + e.
_SHUFFLE_OFFSET = 2**40
_OTHER = {"easy": "hard", "hard": "easy"}


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"fraction must be a number in (0, 1], got {type(fraction).__name__} {fraction!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return float(fraction)


def kept_per_class(fraction: float, counts: list[int]) -> list[int]:
    """ceil(fraction * L) for each class size L, exactly, reading ``fraction`` as the decimal it
    prints as (0.55 * 100 keeps 55, not the 56 that float rounding would give)."""
    f = Fraction(repr(float(fraction)))
    return [-((-f.numerator * c) // f.denominator) for c in counts]


def select_prototypes(sq_distances: Tensor, labels: Tensor, counts: Tensor, fraction: float = 0.8,
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """IDS's subsets from each sample's squared distance to its class centroid (Alg. 2, 16-17).

    Per class c of L_c samples, k_c = ceil(``fraction`` * L_c): EASY holds the k_c samples
    nearest the centroid, HARD the k_c farthest plus the prototype (the nearest sample) when it
    is not among them; ties in distance go to the lower index (in both orders). The paper's
    line 17 adds the last sample of the sorted order, which in EASY's ascending order is the
    farthest, not the prototype; here the prototype is the nearest in both modes (and already in
    EASY).

    Args:
        sq_distances (Tensor[N]): float32/float64 distances (``ops.centroid_distances``), finite.
        labels (Tensor[N]): int64/int32 classes in [0, K).
        counts (Tensor[K]): int64 samples per class.
        fraction: share kept per class, in (0, 1].

    Returns:
        (easy, hard, prototypes): int64 index tensors, easy and hard in increasing order;
        prototypes Tensor[K], -1 for an empty class. All on the device of ``sq_distances``.
    """
    fraction = _check_fraction(fraction)
    for name, value in (("sq_distances", sq_distances), ("labels", labels), ("counts", counts)):
        if not isinstance(value, Tensor) or value.dim() != 1:
            raise TypeError(f"{name} must be a 1-D torch.Tensor, got {_describe(value)}")
    if sq_distances.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"sq_distances must be float32 or float64, got {sq_distances.dtype}")
    if labels.shape != sq_distances.shape:
        raise ValueError(f"labels must have shape {tuple(sq_distances.shape)}, got {tuple(labels.shape)}")
    if counts.dtype != torch.int64 or int(counts.sum()) != labels.numel():
        raise ValueError(f"counts must be int64 class sizes adding up to {labels.numel()} (the labels' bincount), got "
                         f"{counts.dtype} adding up to {int(counts.sum())}")
    device = sq_distances.device
    k = len(counts)
    sizes = counts.tolist()
    keep = torch.tensor(kept_per_class(fraction, sizes), dtype=torch.int64, device=device)
    counts = counts.to(device)
    start = torch.cumsum(counts, 0) - counts
    cls = torch.repeat_interleave(torch.arange(k, device=device), counts)  # the class of each sorted position
    rank = torch.arange(cls.numel(), device=device) - start[cls]  # position within its class
    taken = rank < keep[cls]
    easy_order = ops.class_order(labels, sq_distances, "easy")
    hard_order = ops.class_order(labels, sq_distances, "hard")
    nonempty = counts > 0
    prototypes = torch.full((k,), -1, dtype=torch.int64, device=device)
    prototypes[nonempty] = easy_order[start[nonempty]]
    easy = torch.sort(easy_order[taken]).values
    hard = torch.unique(torch.cat([hard_order[taken], prototypes[nonempty]]))
    return easy, hard, prototypes


def _describe(value) -> str:
    return f"a {value.dim()}-D tensor" if isinstance(value, Tensor) else type(value).__name__


class _Stop(Exception):
    """Raised by the embedding hook once it has what it needs: the rest of the forward is skipped."""


def _hook_target(model: nn.Module, layer) -> tuple[nn.Module, bool]:
    """(module, take its input): the named or given submodule's output, or the input of the
    model's last nn.Linear when ``layer`` is None."""
    if layer is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("layer must name the embedding layer: the model has no nn.Linear whose input to take")
        return linears[-1], True
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError("layer must be a submodule of model")
        return layer, False
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer), False
        except AttributeError as error:
            raise ValueError(f"layer must name a submodule of model, got {layer!r}") from error
    raise TypeError(f"layer must be None, a submodule name or an nn.Module, got {type(layer).__name__}")


def embed_dataset(model: nn.Module, loader, layer: Union[str, nn.Module, None] = None, *,
                  device: Union[torch.device, str, None] = None, progress: bool = True,
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Embed every sample a loader yields with a model, under ``torch.inference_mode``.

    The embedding is a submodule's output, taken with a forward hook (the rest of the forward is
    skipped): ``layer`` names it (``model.get_submodule``) or is the module; by default it is
    the input of the model's last ``nn.Linear`` (its classifier head), i.e. the penultimate
    features. The model runs in eval mode (restored afterwards); nothing is downloaded.

    Args:
        model: any nn.Module.
        loader: iterable of batches ``(inputs, targets, indices)`` (e.g. a DataLoader over an
            :class:`~dsampling_ext.IndexedDataset`), dicts with "input", "target" and "index",
            or ``(inputs, targets)`` from a sequential DataLoader, whose samples are numbered in
            the order they come (any other loader must give indices).
        layer: the embedding layer (see above).
        device: where the model runs and the embeddings are kept (default: the model's).
        progress: a tqdm progress bar (if tqdm is installed).

    Returns:
        (embeddings, labels, indices): Tensor[M, D] (the layer's output flattened per sample, in
        its dtype), Tensor[M] int64, Tensor[M] int64, in the order the loader gave them.
    """
    check_model(model)
    check_loader(loader)
    target, take_input = _hook_target(model, layer)
    sequential = is_sequential(loader)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    captured: list[Tensor] = []

    def hook(module, inputs, output=None):
        value = inputs[0] if take_input else output
        if not isinstance(value, Tensor):
            raise TypeError(f"layer must produce a tensor, got {type(value).__name__}")
        captured.append(value.reshape(value.shape[0], -1))
        raise _Stop

    handle = (target.register_forward_pre_hook(hook) if take_input else target.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    batches = loader
    if progress:
        try:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc="embedding", leave=False)
        except ImportError:  # tqdm is optional
            pass
    embeddings, labels, indices = [], [], []
    seen = 0
    try:
        with torch.inference_mode():
            for batch in batches:
                inputs, targets, idx = split_batch(batch)
                if idx is None:
                    if not sequential:
                        raise ValueError("loader must yield (inputs, targets, indices) when it shuffles or is not a "
                                         "sequential DataLoader (wrap the dataset in dsampling_ext.IndexedDataset)")
                    idx = torch.arange(seen, seen + len(targets))
                captured.clear()
                try:
                    model(inputs.to(device) if isinstance(inputs, Tensor) else inputs)
                except _Stop:
                    pass
                if not captured:
                    raise ValueError("layer was not called in the model's forward")
                embeddings.append(captured[0])
                labels.append(torch.as_tensor(targets).to(device=device, dtype=torch.int64))
                indices.append(idx.to(device=device, dtype=torch.int64))
                seen += len(targets)
    finally:
        handle.remove()
        model.train(was_training)
    if not embeddings:
        raise ValueError("loader must yield at least one batch")
    return torch.cat(embeddings), torch.cat(labels), torch.cat(indices)


class PrototypeSelection(ResumableSampler):
    """IDS (seed 003): train on each class's samples nearest its centroid, then on the farthest.

    Fit it once (:meth:`fit` on given embeddings, or :meth:`fit_model` to embed the dataset with
    a model), then use it as a DataLoader's sampler and call :meth:`set_epoch` every epoch.
    Epochs before ``switch_epoch`` serve the ``order`` subset ("easy" by default), epochs from it
    the other one (the paper's gamma: EASY, then HARD); with ``switch_epoch=None`` the ``order``
    subset throughout. Each epoch's subset is shuffled (Philox, keyed by seed and epoch), so every
    rank draws the same order, and each rank yields its shard, like DistributedSampler.
    ``state_dict()`` holds the fitted subsets and the position within the epoch: a run resumed
    from it, even mid-epoch, continues exactly, without re-embedding (:meth:`use_model` gives it
    the model again when ``refit_every`` will need one).

    Per class of L samples: ceil(``fraction`` * L) samples (computed exactly; the paper's
    alpha, default 0.8), nearest the class centroid (EASY) or farthest (HARD, plus the class
    prototype, the nearest sample); ties in distance go to the lower index. Distances are squared
    Euclidean to the class mean of the embeddings (the paper's 1-cluster K-Means), from one fused
    op. Paper defaults: fraction 0.8; gamma 180 (CIFAR-10), 120 (CIFAR-100), 14 (ImageNet) of
    200/200/90 epochs.

    Args:
        fraction: share of each class kept, in (0, 1] (1 keeps everything).
        switch_epoch: first epoch served the other subset (gamma), or None.
        order: the subset served first: "easy" (nearest first) or "hard".
        seed: seed of the shuffles.  shuffle: shuffle each epoch's subset.
        refit_every: after :meth:`fit_model`, re-embed the dataset with the (trained) model
            every this many epochs (at set_epoch of epochs refit_every, 2 refit_every, ...).
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).

    Attributes (after fitting):
        easy_indices, hard_indices (Tensor[M] int64, increasing), prototypes (Tensor[K] int64,
        -1 for an empty class), centroids (Tensor[K, D]), sq_distances (Tensor[N]), counts
        (Tensor[K]); all on the CPU.
    """

    def __init__(self, fraction: float = 0.8, switch_epoch: Optional[int] = None, order: str = "easy",
                 seed: int = 0, shuffle: bool = True, refit_every: Optional[int] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        self.fraction = _check_fraction(fraction)
        if switch_epoch is not None:
            require_int("switch_epoch", switch_epoch, 0)
        if order not in _OTHER:
            raise ValueError(f"order must be 'easy' or 'hard', got {order!r}")
        if refit_every is not None:
            require_int("refit_every", refit_every, 1)
        self.switch_epoch, self.order, self.refit_every = switch_epoch, order, refit_every
        self.seed = require_seed(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.epoch = 0
        self.fitted_epoch: Optional[int] = None  # the epoch of the last fit (None: not fitted)
        self._source = None  # (model, loader, layer, device, num_classes, progress) of fit_model
        self.easy_indices = self.hard_indices = self.prototypes = None
        self.centroids = self.sq_distances = self.counts = None
        self.num_samples = self.num_classes = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(fraction={self.fraction}, switch_epoch={self.switch_epoch}, "
                f"order={self.order!r}, seed={self.seed}, shuffle={self.shuffle}, refit_every={self.refit_every})")

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, embeddings: Tensor, labels: Tensor, num_classes: Optional[int] = None) -> "PrototypeSelection":
        """Rank the samples by distance to their class centroids and make the two subsets.

        Args:
            embeddings (Tensor[N, D]): float16/bfloat16/float32/float64, finite; row i is sample i.
            labels (Tensor[N]): int64/int32 classes in [0, num_classes).
            num_classes: K (default: max label + 1).

        Returns:
            self. Reads the class counts back to the host (one sync; fitting is offline).
        """
        if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
            raise TypeError("embeddings and labels must be torch.Tensors")
        if labels.dtype not in (torch.int64, torch.int32) or labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D int64/int32 tensor, got {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() == 0:
            raise ValueError("labels must be non-empty: there is nothing to select from")
        if num_classes is None:
            num_classes = int(labels.max()) + 1
        require_int("num_classes", num_classes, 1)
        require_index_range("labels", labels, num_classes)
        labels = labels.to(embeddings.device)
        try:
            centroids, d2, counts = ops.centroid_distances(embeddings, labels, num_classes)
        except RuntimeError as error:  # the CPU kernel names the first NaN/Inf; CUDA's is found below
            if "embeddings must be finite" in str(error):
                raise ValueError(str(error)) from error
            raise
        if not bool(torch.isfinite(d2).all()):
            raise ValueError("embeddings must be finite (a NaN/Inf value, or distances too large for float32)")
        easy, hard, prototypes = select_prototypes(d2, labels, counts, self.fraction)
        self.easy_indices, self.hard_indices, self.prototypes = easy.cpu(), hard.cpu(), prototypes.cpu()
        self.centroids, self.sq_distances, self.counts = centroids.cpu(), d2.cpu(), counts.cpu()
        self.num_samples, self.num_classes = labels.numel(), num_classes
        self.fitted_epoch = self.epoch
        return self

    def fit_model(self, model: nn.Module, loader, layer: Union[str, nn.Module, None] = None, *,
                  device: Union[torch.device, str, None] = None, num_classes: Optional[int] = None,
                  progress: bool = True) -> "PrototypeSelection":
        """Embed the dataset with ``model`` (see :func:`embed_dataset`), then :meth:`fit`.

        The loader must cover the whole dataset: batches ``(inputs, targets, indices)`` with the
        indices 0..N-1 each once, or ``(inputs, targets)`` in dataset order. Under
        torch.distributed each rank embeds what its loader gives (its shard, or everything), the
        ranks gather the embeddings, and every rank fits the same full set. With ``refit_every``
        the model and loader are kept to re-embed later (:meth:`use_model`).
        """
        self.use_model(model, loader, layer, device=device, num_classes=num_classes, progress=progress)
        embeddings, labels, indices = embed_dataset(model, loader, layer, device=device, progress=progress)
        if distributed.active():
            embeddings, labels, indices = _gather(embeddings, labels, indices)
        distinct, inverse = torch.unique(indices, return_inverse=True)
        n = distinct.numel()
        if int(distinct[0]) != 0 or int(distinct[-1]) != n - 1:
            raise ValueError(f"loader must yield every index 0..N-1; it gave {n} distinct indices from "
                             f"{int(distinct[0])} to {int(distinct[-1])}")
        # The row of each index's first occurrence (an index given twice, e.g. by padded shards, counts once).
        positions = torch.arange(inverse.numel(), device=inverse.device)
        row = torch.full((n,), inverse.numel(), dtype=torch.int64, device=inverse.device)
        row.scatter_reduce_(0, inverse, positions, "amin")
        return self.fit(embeddings[row], labels[row], num_classes)

    def use_model(self, model: nn.Module, loader, layer: Union[str, nn.Module, None] = None, *,
                  device: Union[torch.device, str, None] = None, num_classes: Optional[int] = None,
                  progress: bool = True) -> "PrototypeSelection":
        """Keep the model and loader that ``refit_every`` re-embeds with, without embedding now
        (:meth:`fit_model` does both). A run resumed from ``state_dict()`` calls this, since a
        state holds the fitted subsets but not the model."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self._source = (model, loader, layer, device, num_classes, progress)
        return self

    # -- the sampler -------------------------------------------------------------------------

    def subset_name(self, epoch: Optional[int] = None) -> str:
        """"easy" or "hard": the subset served in ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.switch_epoch is None or epoch < self.switch_epoch:
            return self.order
        return _OTHER[self.order]

    @property
    def indices(self) -> Tensor:
        """This epoch's subset, in increasing order."""
        if self.easy_indices is None:
            raise RuntimeError("PrototypeSelection must be fitted first (fit or fit_model)")
        return self.easy_indices if self.subset_name() == "easy" else self.hard_indices

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; re-embeds when ``refit_every`` says so (a collective under DDP)."""
        super().set_epoch(epoch)
        epoch = self.epoch
        if self.refit_every is not None and epoch > 0 and epoch % self.refit_every == 0 and self.fitted_epoch != epoch:
            if self._source is None:
                raise RuntimeError("refit_every needs fit_model or use_model (a model and loader to re-embed with)")
            model, loader, layer, device, num_classes, progress = self._source
            self.fit_model(model, loader, layer, device=device, num_classes=num_classes, progress=progress)

    def __len__(self) -> int:
        return sharded_length(self.indices.numel(), self.num_replicas)

    def _epoch_order(self) -> Tensor:
        order = self.indices.clone()
        if self.shuffle:
            ops.random_subset_(order, order.numel(), self.seed, _SHUFFLE_OFFSET + self.epoch)
        return shard(order, self.num_replicas, self.rank)

    # state_dict / load_state_dict (ResumableSampler): configuration, epoch, position within the
    # epoch, and the fitted subsets, so a resumed run needs no re-embedding.
    def _state(self) -> dict:
        fitted = None if self.easy_indices is None else dict(
            easy=self.easy_indices.clone(), hard=self.hard_indices.clone(), prototypes=self.prototypes.clone(),
            centroids=self.centroids.clone(), sq_distances=self.sq_distances.clone(), counts=self.counts.clone(),
            num_samples=self.num_samples, num_classes=self.num_classes)
        return dict(fitted_epoch=self.fitted_epoch, fitted=fitted)

    def _load_state(self, state: dict) -> None:
        self.fitted_epoch = state["fitted_epoch"]
        fitted = state["fitted"]
        if fitted is None:
            self.easy_indices = self.hard_indices = self.prototypes = None
            self.centroids = self.sq_distances = self.counts = None
            return
        self.easy_indices, self.hard_indices, self.prototypes = (fitted[k].clone() for k in ("easy", "hard", "prototypes"))
        self.centroids, self.sq_distances, self.counts = (fitted[k].clone()
                                                          for k in ("centroids", "sq_distances", "counts"))
        self.num_samples, self.num_classes = fitted["num_samples"], fitted["num_classes"]


def _gather(embeddings: Tensor, labels: Tensor, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every rank's embeddings, labels and indices, in rank order."""
    d = embeddings.shape[1]
    flat, _ = distributed.all_gather_cat(embeddings.reshape(-1))
    labels, _ = distributed.all_gather_cat(labels)
    indices, _ = distributed.all_gather_cat(indices)
    return flat.view(-1, d), labels, indices
