// Argument checks shared by the CPU and CUDA host functions, so both twins reject the same
// inputs with the same words: "<op>: <arg> must be <expectation>, got <actual>".
// The fake kernels in dsampling_ext/ops/ repeat these checks with the same wording.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace dsampling {
namespace checks {

inline bool is_loss_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void loss_histogram(const at::Tensor& values, int64_t bins,
                           const std::optional<at::ArrayRef<double>>& range) {
  TORCH_CHECK(is_loss_dtype(values.scalar_type()),
              "loss_histogram: values must be float16, bfloat16, float32 or float64, got ",
              values.scalar_type());
  TORCH_CHECK(values.numel() > 0, "loss_histogram: values must be non-empty, got shape ",
              values.sizes());
  TORCH_CHECK(bins >= 1 && bins <= INT32_MAX, "loss_histogram: bins must be in [1, 2**31 - 1], got ", bins);
  if (range.has_value()) {
    TORCH_CHECK(range->size() == 2, "loss_histogram: range must be (min, max), got ",
                range->size(), " values");
    const double lo = (*range)[0], hi = (*range)[1];
    TORCH_CHECK(std::isfinite(lo) && std::isfinite(hi),
                "loss_histogram: range must be finite, got (", lo, ", ", hi, ")");
    TORCH_CHECK(lo <= hi, "loss_histogram: range must have min <= max, got (", lo, ", ", hi, ")");
  }
}

// numpy's "Too many bins for data range", raised by both twins (with a range, CUDA checks it on the
// host from the range alone; without one the data decide, and CUDA gives NaN edges instead).
inline void loss_histogram_edges(bool every_bin_has_width, int64_t bins, double first, double last) {
  TORCH_CHECK(every_bin_has_width, "loss_histogram: bins must leave every bin a finite width, got bins=", bins,
              " for the range [", first, ", ", last, "] (edges repeat in this dtype)");
}

inline void philox_fill_uniform(const at::Tensor& out) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_uniform_: out must be float32, got ",
              out.scalar_type());
  TORCH_CHECK(out.dim() == 1 && out.is_contiguous(),
              "philox_fill_uniform_: out must be a contiguous 1-D tensor, got shape ", out.sizes());
}

inline void philox4x32_10(const at::Tensor& counter) {
  TORCH_CHECK(counter.scalar_type() == at::kLong, "_philox4x32_10: counter must be int64, got ",
              counter.scalar_type());
  TORCH_CHECK(counter.dim() == 2 && counter.size(1) == 4,
              "_philox4x32_10: counter must have shape [N, 4], got ", counter.sizes());
}

inline void histogram_select(const at::Tensor& history, const at::Tensor& state, const at::Tensor& losses,
                             int64_t rule, int64_t bin_rule, int64_t bins, double threshold, double clip_sigma,
                             int64_t clip_mode, double keep_fraction, int64_t keep_mode, double beta,
                             const std::optional<at::Tensor>& keys) {
  const char* op = "histogram_select: ";
  if (keys.has_value()) {
    TORCH_CHECK(keys->scalar_type() == at::kLong && keys->dim() == 1 && keys->numel() == losses.numel(), op,
                "keys must be an int64 tensor of shape [", losses.numel(), "] (one per loss), got ",
                keys->scalar_type(), " ", keys->sizes());
    TORCH_CHECK(keys->device() == losses.device(), op, "keys must be on the device of losses (", losses.device(),
                "), got ", keys->device());
  }
  TORCH_CHECK(history.scalar_type() == at::kFloat || history.scalar_type() == at::kDouble, op,
              "history must be float32 or float64, got ", history.scalar_type());
  TORCH_CHECK(history.dim() == 1 && history.is_contiguous() && history.numel() >= 1 && history.numel() <= 65536, op,
              "history must be a contiguous 1-D tensor of 1 to 65536 values, got shape ", history.sizes());
  TORCH_CHECK(state.scalar_type() == at::kLong && state.dim() == 1 && state.numel() == 2 && state.is_contiguous(), op,
              "state must be a contiguous int64 tensor of shape [2] (length, write position), got ",
              state.scalar_type(), " ", state.sizes());
  TORCH_CHECK(losses.scalar_type() == history.scalar_type(), op, "losses must have the dtype of history (",
              history.scalar_type(), "), got ", losses.scalar_type());
  TORCH_CHECK(losses.dim() == 1 && losses.numel() >= 1, op, "losses must be a non-empty 1-D tensor, got shape ",
              losses.sizes());
  TORCH_CHECK(history.device() == state.device() && history.device() == losses.device(), op,
              "history, state and losses must be on one device, got ", history.device(), ", ", state.device(), ", ",
              losses.device());
  TORCH_CHECK(rule == 0 || rule == 1, op, "rule must be 0 (pmf) or 1 (cdf), got ", rule);
  TORCH_CHECK(bin_rule >= 0 && bin_rule <= 3, op, "bin_rule must be 0 (fixed), 1 (sturges), 2 (sqrt) or 3 (rice), got ",
              bin_rule);
  TORCH_CHECK(bin_rule != 0 || (bins >= 1 && bins <= 2048), op, "bins must be in [1, 2048], got ", bins);
  TORCH_CHECK(std::isfinite(threshold) && threshold >= 0.0, op, "threshold must be finite and >= 0, got ", threshold);
  TORCH_CHECK(clip_mode >= 0 && clip_mode <= 2, op, "clip_mode must be 0 (none), 1 (clamp) or 2 (drop), got ",
              clip_mode);
  TORCH_CHECK(std::isfinite(clip_sigma) && clip_sigma >= 0.0, op, "clip_sigma must be finite and >= 0, got ",
              clip_sigma);
  TORCH_CHECK(keep_fraction >= 0.0 && keep_fraction <= 1.0, op, "keep_fraction must be in [0, 1], got ",
              keep_fraction);
  TORCH_CHECK(keep_mode >= 0 && keep_mode <= 2, op, "keep_mode must be 0 (bernoulli), 1 (fraction) or 2 (top), got ",
              keep_mode);
  TORCH_CHECK(rule == 0 || keep_mode == 0, op, "keep_mode must be 0 (bernoulli) with rule 1 (cdf), got ", keep_mode);
  TORCH_CHECK(std::isfinite(beta) && beta >= 0.0, op, "beta must be finite and >= 0, got ", beta);
}

// A float tensor `rows` of shape [R, W >= 1] (`shape` in words) and int64/int32 labels of shape
// [R] on its device: the inputs of argmax_mismatch, gradnorm_scores and centroid_distances.
inline void rows_and_labels(const char* op, const char* name, const at::Tensor& rows, const char* shape,
                            const at::Tensor& labels) {
  TORCH_CHECK(is_loss_dtype(rows.scalar_type()), op, name, " must be float16, bfloat16, float32 or float64, got ",
              rows.scalar_type());
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) >= 1, op, name, " must have shape ", shape, ", got ", rows.sizes());
  TORCH_CHECK(labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt, op,
              "labels must be int64 or int32, got ", labels.scalar_type());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == rows.size(0), op, "labels must have shape [", rows.size(0),
              "], got ", labels.sizes());
  TORCH_CHECK(labels.device() == rows.device(), op, "labels must be on the device of ", name, " (", rows.device(),
              "), got ", labels.device());
}

inline void argmax_mismatch(const at::Tensor& logits, const at::Tensor& labels, const std::optional<double>& margin) {
  const char* op = "argmax_mismatch: ";
  rows_and_labels(op, "logits", logits, "[B, C] with C >= 1", labels);
  if (margin.has_value()) {
    TORCH_CHECK(std::isfinite(*margin) && *margin >= 0.0 && *margin <= 1.0, op, "margin must be in [0, 1], got ",
                *margin);
  }
}

inline void permutation_tensor(const char* op, const at::Tensor& perm) {
  TORCH_CHECK(perm.scalar_type() == at::kLong && perm.dim() == 1 && perm.is_contiguous(), op,
              "perm must be a contiguous 1-D int64 tensor, got ", perm.scalar_type(), " ", perm.sizes());
}

inline void partition_resample(const at::Tensor& perm, int64_t size, int64_t k) {
  const char* op = "partition_resample: ";
  permutation_tensor(op, perm);
  const int64_t n = perm.numel();
  TORCH_CHECK(size >= 0 && size <= n, op, "size must be in [0, ", n, "], got ", size);
  TORCH_CHECK(k >= 0 && k <= std::min(size, n - size), op, "k must be in [0, min(size, N - size)] = [0, ",
              std::min(size, n - size), "], got ", k);
}

inline void random_subset(const at::Tensor& perm, int64_t size) {
  const char* op = "random_subset_: ";
  permutation_tensor(op, perm);
  TORCH_CHECK(size >= 0 && size <= perm.numel(), op, "size must be in [0, ", perm.numel(), "], got ", size);
}

// The score table: scores [N] (float32/float64, or int8 correctness for the mismatch rule) and
// seen_epoch [N] int32, contiguous, on one device.
inline void table_tensors(const char* op, const at::Tensor& scores, const at::Tensor& seen_epoch, bool correctness) {
  if (correctness) {
    TORCH_CHECK(scores.scalar_type() == at::kChar, op, "scores must be int8 correctness (1 right, 0 wrong, -1 unknown) "
                "for the mismatch rule, got ", scores.scalar_type());
  } else {
    TORCH_CHECK(scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kDouble, op,
                "scores must be float32 or float64, got ", scores.scalar_type());
  }
  TORCH_CHECK(scores.dim() == 1 && scores.is_contiguous(), op, "scores must be a contiguous 1-D tensor, got shape ",
              scores.sizes());
  TORCH_CHECK(seen_epoch.scalar_type() == at::kInt && seen_epoch.dim() == 1 && seen_epoch.is_contiguous() &&
                  seen_epoch.numel() == scores.numel(),
              op, "seen_epoch must be a contiguous int32 tensor of shape [", scores.numel(), "], got ",
              seen_epoch.scalar_type(), " ", seen_epoch.sizes());
  TORCH_CHECK(seen_epoch.device() == scores.device(), op, "seen_epoch must be on the device of scores (",
              scores.device(), "), got ", seen_epoch.device());
}

inline void epoch_value(const char* op, int64_t epoch) {
  TORCH_CHECK(epoch >= 0 && epoch <= INT32_MAX, op, "epoch must be in [0, 2**31 - 1], got ", epoch);
}

inline void table_select(const at::Tensor& scores, const at::Tensor& seen_epoch, int64_t epoch, int64_t rule,
                         double prune, int64_t staleness, int64_t bin_rule, int64_t bins, double threshold, double beta,
                         bool reweight) {
  const char* op = "table_select: ";
  TORCH_CHECK(rule >= 0 && rule <= 3, op, "rule must be 0 (mean), 1 (pmf), 2 (percentile) or 3 (mismatch), got ", rule);
  table_tensors(op, scores, seen_epoch, rule == 3);
  epoch_value(op, epoch);
  TORCH_CHECK(prune >= 0.0 && prune <= 1.0, op, "prune must be in [0, 1], got ", prune);
  TORCH_CHECK(!(reweight && prune == 1.0), op, "reweight must be false with prune = 1 (weight 1/(1 - prune))");
  TORCH_CHECK(staleness >= 1 && staleness <= INT32_MAX, op, "staleness must be in [1, 2**31 - 1], got ", staleness);
  TORCH_CHECK(bin_rule >= 0 && bin_rule <= 3, op, "bin_rule must be 0 (fixed), 1 (sturges), 2 (sqrt) or 3 (rice), got ",
              bin_rule);
  TORCH_CHECK(bin_rule != 0 || (bins >= 1 && bins <= 65536), op, "bins must be in [1, 65536], got ", bins);
  TORCH_CHECK(std::isfinite(threshold) && threshold >= 0.0 && threshold < 1.0, op,
              "threshold must be in [0, 1) (a PMF threshold of 1 or more selects nothing), got ", threshold);
  TORCH_CHECK(std::isfinite(beta) && beta >= 0.0, op, "beta must be finite and >= 0, got ", beta);
  TORCH_CHECK(!(reweight && rule == 2), op, "reweight must be false for rule 2 (percentile): its keep probabilities "
              "reach 1/(2N)**beta, so 1/q weights are unbounded");
}

inline void table_record(const at::Tensor& scores, const at::Tensor& correct, const at::Tensor& seen_epoch,
                         const at::Tensor& indices, const at::Tensor& losses, int64_t epoch,
                         const std::optional<at::Tensor>& logits, const std::optional<at::Tensor>& targets) {
  const char* op = "table_record_: ";
  table_tensors(op, scores, seen_epoch, false);
  TORCH_CHECK(correct.scalar_type() == at::kChar && correct.dim() == 1 && correct.is_contiguous() &&
                  correct.numel() == scores.numel(),
              op, "correct must be a contiguous int8 tensor of shape [", scores.numel(), "], got ",
              correct.scalar_type(), " ", correct.sizes());
  TORCH_CHECK(correct.device() == scores.device(), op, "correct must be on the device of scores (", scores.device(),
              "), got ", correct.device());
  TORCH_CHECK(indices.scalar_type() == at::kLong || indices.scalar_type() == at::kInt, op,
              "indices must be int64 or int32, got ", indices.scalar_type());
  TORCH_CHECK(indices.dim() == 1, op, "indices must be a 1-D tensor, got shape ", indices.sizes());
  TORCH_CHECK(is_loss_dtype(losses.scalar_type()), op, "losses must be float16, bfloat16, float32 or float64, got ",
              losses.scalar_type());
  TORCH_CHECK(losses.dim() == 1 && losses.numel() == indices.numel(), op, "losses must have shape [",
              indices.numel(), "] (one per index; reduction='none'), got ", losses.sizes());
  TORCH_CHECK(indices.device() == scores.device() && losses.device() == scores.device(), op,
              "indices and losses must be on the device of the table (", scores.device(), "), got ", indices.device(),
              " and ", losses.device());
  epoch_value(op, epoch);
  TORCH_CHECK(logits.has_value() == targets.has_value(), op, "logits and targets must be given together, got ",
              logits.has_value() ? "logits only" : "targets only");
  if (logits.has_value()) {
    TORCH_CHECK(is_loss_dtype(logits->scalar_type()), op, "logits must be float16, bfloat16, float32 or float64, got ",
                logits->scalar_type());
    TORCH_CHECK(logits->dim() == 2 && logits->size(0) == indices.numel() && logits->size(1) >= 1, op,
                "logits must have shape [", indices.numel(), ", C] with C >= 1, got ", logits->sizes());
    TORCH_CHECK(targets->scalar_type() == at::kLong || targets->scalar_type() == at::kInt, op,
                "targets must be int64 or int32, got ", targets->scalar_type());
    TORCH_CHECK(targets->dim() == 1 && targets->numel() == indices.numel(), op, "targets must have shape [",
                indices.numel(), "], got ", targets->sizes());
    TORCH_CHECK(logits->device() == scores.device() && targets->device() == scores.device(), op,
                "logits and targets must be on the device of the table (", scores.device(), "), got ",
                logits->device(), " and ", targets->device());
  }
}

inline void weighted_sample(const at::Tensor& weights, int64_t num_samples) {
  const char* op = "weighted_sample: ";
  TORCH_CHECK(is_loss_dtype(weights.scalar_type()), op, "weights must be float16, bfloat16, float32 or float64, got ",
              weights.scalar_type());
  TORCH_CHECK(weights.dim() == 1 && weights.numel() >= 1, op, "weights must be a non-empty 1-D tensor, got shape ",
              weights.sizes());
  TORCH_CHECK(weights.numel() <= (int64_t{1} << 40), op, "weights must hold at most 2**40 values, got ",
              weights.numel());
  TORCH_CHECK(num_samples >= 0, op, "num_samples must be >= 0, got ", num_samples);
}

inline void gradnorm_scores(const at::Tensor& logits, const at::Tensor& labels, const std::optional<at::Tensor>& groups,
                            int64_t num_groups) {
  const char* op = "gradnorm_scores: ";
  rows_and_labels(op, "logits", logits, "[B, C] with C >= 1", labels);
  TORCH_CHECK(num_groups >= 1 && num_groups <= INT32_MAX, op, "num_groups must be in [1, 2**31 - 1], got ", num_groups);
  if (groups.has_value()) {
    TORCH_CHECK(groups->scalar_type() == at::kLong || groups->scalar_type() == at::kInt, op,
                "groups must be int64 or int32, got ", groups->scalar_type());
    TORCH_CHECK(groups->dim() == 1 && groups->size(0) == logits.size(0), op, "groups must have shape [",
                logits.size(0), "], got ", groups->sizes());
    TORCH_CHECK(groups->device() == logits.device(), op, "groups must be on the device of logits (", logits.device(),
                "), got ", groups->device());
  }
}

inline void centroid_distances(const at::Tensor& embeddings, const at::Tensor& labels, int64_t num_classes) {
  const char* op = "centroid_distances: ";
  rows_and_labels(op, "embeddings", embeddings, "[N, D] with D >= 1", labels);
  TORCH_CHECK(num_classes >= 1 && num_classes <= INT32_MAX, op, "num_classes must be in [1, 2**31 - 1], got ",
              num_classes);
}

}  // namespace checks
}  // namespace dsampling
