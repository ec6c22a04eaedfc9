#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "common/binning.h"
#include "common/checks.h"
#include "common/philox.h"
#include "common/selection.h"
#include "cpu/count_bins.h"

namespace dsampling {
namespace {

using selection::lane_tree_sum;

// Smallest and largest of x[0, n) (+inf and -inf when n = 0) in eight independent lanes (one
// running min and max is a chain of dependent instructions). min and max are exact, so the
// order, which differs from the CUDA twin's, does not change them.
std::pair<double, double> min_max(const double* x, int64_t n) {
  constexpr int64_t kWidth = 8;
  double lo[kWidth], hi[kWidth];
  std::fill(lo, lo + kWidth, std::numeric_limits<double>::infinity());
  std::fill(hi, hi + kWidth, -std::numeric_limits<double>::infinity());
  for (int64_t j = 0; j < n; j += kWidth) {
    const int64_t m = std::min(kWidth, n - j);
    for (int64_t t = 0; t < m; ++t) {
      lo[t] = x[j + t] < lo[t] ? x[j + t] : lo[t];
      hi[t] = x[j + t] > hi[t] ? x[j + t] : hi[t];
    }
  }
  return {*std::min_element(lo, lo + kWidth), *std::max_element(hi, hi + kWidth)};
}

std::tuple<at::Tensor, at::Tensor> histogram_select_cpu(
    const at::Tensor& history, const at::Tensor& state, const at::Tensor& losses, int64_t rule, int64_t bin_rule,
    int64_t bins, double threshold, double clip_sigma, int64_t clip_mode, double keep_fraction, int64_t keep_mode,
    double beta, bool skip_nonfinite, int64_t seed, int64_t offset, const std::optional<at::Tensor>& keys) {
  checks::histogram_select(history, state, losses, rule, bin_rule, bins, threshold, clip_sigma, clip_mode,
                           keep_fraction, keep_mode, beta, keys);
  TORCH_CHECK(history.is_cpu(), "histogram_select: history must be a CPU tensor, got ", history.device());
  const int64_t capacity = history.numel();
  int64_t* st = state.mutable_data_ptr<int64_t>();
  TORCH_CHECK(st[0] >= 0 && st[0] <= capacity && st[1] >= 0 && st[1] < capacity,
              "histogram_select: state must hold a length in [0, ", capacity, "] and a write position in [0, ",
              capacity, "), got (", st[0], ", ", st[1], ")");
  const at::Tensor x = losses.contiguous();
  const int64_t batch = x.numel();
  // Draw i is keyed by keys[i] (a dataset index) when given, else by the position i. All draws
  // first, in loops the compiler vectorises (Philox is most of the per-sample cost).
  std::vector<float> u(batch);
  if (keys.has_value()) {
    const at::Tensor key_tensor = keys->contiguous();
    const int64_t* key = key_tensor.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < batch; ++i) u[i] = philox::element_uniform(seed, offset, static_cast<uint64_t>(key[i]), 0);
  } else {
    for (int64_t i = 0; i < batch; ++i) u[i] = philox::element_uniform(seed, offset, static_cast<uint64_t>(i), 0);
  }
  at::Tensor keep = at::empty({batch}, x.options().dtype(at::kBool));
  at::Tensor p = at::empty({batch}, x.options().dtype(at::kDouble));
  bool* keep_out = keep.mutable_data_ptr<bool>();
  double* p_out = p.mutable_data_ptr<double>();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "histogram_select_cpu", [&] {
    const scalar_t* l = x.const_data_ptr<scalar_t>();
    scalar_t* h = history.mutable_data_ptr<scalar_t>();
    if (!skip_nonfinite) {
      for (int64_t i = 0; i < batch; ++i) {
        TORCH_CHECK(std::isfinite(static_cast<double>(l[i])), "histogram_select: losses must be finite, got ",
                    static_cast<double>(l[i]), " at index ", i, " (skip_nonfinite=True ignores such losses)");
      }
    }
    // 1. Append the batch to the ring buffer; the valid slots are always [0, length).
    int64_t length = st[0], pos = st[1];
    for (int64_t i = 0; i < batch; ++i) {
      if (!std::isfinite(static_cast<double>(l[i]))) continue;
      h[pos] = l[i];
      pos = pos + 1 == capacity ? 0 : pos + 1;
      length = std::min(length + 1, capacity);
    }
    st[0] = length;
    st[1] = pos;

    // 2. Moments of the raw history and the clip bounds.
    const auto value = [h](int64_t j) { return static_cast<double>(h[j]); };
    selection::ClipBounds bounds{0.0, 0.0, selection::kNoClip};
    if (clip_mode != selection::kNoClip && length > 0) {
      const double mean = div_rn(lane_tree_sum(length, value), static_cast<double>(length));
      const double var = div_rn(lane_tree_sum(length, [&](int64_t j) {
                                  const double d = sub_rn(value(j), mean);
                                  return mul_rn(d, d);
                                }),
                                static_cast<double>(length));
      bounds = selection::clip_bounds(mean, std::sqrt(var), clip_sigma, clip_mode);
    }

    // 3. The clipped history, its range and histogram (numpy float64 semantics).
    std::vector<double> clipped(length);
    int64_t n = 0;
    for (int64_t j = 0; j < length; ++j) {
      n += selection::clip(value(j), bounds, &clipped[n]);  // branch-free: a dropped value is overwritten by the next one
    }
    clipped.resize(n);
    const auto [lo, hi] = min_max(clipped.data(), n);
    std::vector<double> edges;
    std::vector<int64_t> counts;
    std::vector<double> pmf;  // count / n per bin
    std::vector<double> sorted;
    int32_t k = 0;
    double denom = 0.0;  // numpy's norm_denom: last edge - first edge
    if (n > 0 && rule == selection::kPmf) {
      k = static_cast<int32_t>(binning::bin_count(bin_rule, n, bins));
      const binning::OuterEdges<double> outer = binning::outer_edges<double>(lo, hi);
      edges.resize(k + 1);
      for (int32_t j = 0; j <= k; ++j) edges[j] = binning::linspace_edge<double>(j, k, outer.first, outer.last);
      counts.assign(k, 0);
      denom = sub_rn(outer.last, outer.first);
      cpu::count_bins<double, double, false>(clipped.data(), n, edges.data(), k, denom, counts.data());
      pmf.resize(k);
      for (int32_t j = 0; j < k; ++j) pmf[j] = div_rn(static_cast<double>(counts[j]), static_cast<double>(n));
    } else if (n > 0) {
      sorted = clipped;
      std::sort(sorted.begin(), sorted.end());
    }

    // 4. p of each batch loss, the candidates and the Bernoulli draws.
    std::vector<std::pair<uint64_t, int64_t>> candidates;  // (rank key, index)
    for (int64_t i = 0; i < batch; ++i) {
      double c;
      const double v = static_cast<double>(l[i]);
      double pi = 0.0;
      int64_t count = 0;
      if (n > 0 && std::isfinite(v) && selection::clip(v, bounds, &c)) {
        if (rule == selection::kPmf) {
          const auto edge = [&edges](int32_t j) { return edges[j]; };
          const int32_t b = binning::bin_index<double, double>(c, edge, k, denom);
          count = b >= 0 ? counts[b] : 0;
          pi = b >= 0 ? pmf[b] : 0.0;
        } else {
          const selection::Ranks r = selection::rank_counts(sorted.data(), n, c);
          pi = selection::power(selection::percentile(r.left, r.right, n), beta);
        }
      }
      p_out[i] = pi;
      if (rule == selection::kCdf) {
        keep_out[i] = static_cast<double>(u[i]) < pi;
      } else if (keep_mode == selection::kBernoulli) {
        keep_out[i] = (pi > threshold) & (static_cast<double>(u[i]) < keep_fraction);  // no branch
      } else {
        keep_out[i] = false;
        if (pi > threshold) candidates.emplace_back(selection::rank_key(keep_mode, count, u[i]), i);
      }
    }

    // 5. Fraction and top modes: the first ceil(alpha * |C|) candidates in (rank key, index) order.
    const int64_t total = static_cast<int64_t>(candidates.size());
    const int64_t m = std::min<int64_t>(selection::kept_count(keep_fraction, total), total);
    if (m > 0) {
      std::nth_element(candidates.begin(), candidates.begin() + (m - 1), candidates.end());
      for (int64_t r = 0; r < m; ++r) keep_out[candidates[r].second] = true;
    }
  });
  return {keep, p};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("histogram_select", &histogram_select_cpu);
}

}  // namespace dsampling
