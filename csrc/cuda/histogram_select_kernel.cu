// histogram_select on CUDA: the whole selection in one launch of one block of kLanes threads
// (the history is at most 65536 values, 512-4096 in practice). The per-element math and the
// summation order are those of the CPU twin (common/selection.h), so keep masks and p agree to
// the bit. No host sync: the state tensor holds the ring buffer's length and write position.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "common/binning.h"
#include "common/checks.h"
#include "common/philox.h"
#include "common/selection.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

using selection::kLanes;
using selection::kMaxBins;

struct Params {
  int64_t rule, bin_rule, bins, clip_mode, keep_mode, seed, offset;
  double threshold, clip_sigma, keep_fraction, beta;
};

// Sum over lanes in the tree order of common/selection.h; every thread gets the result.
__device__ double tree_sum(double mine, double* partial) {
  partial[threadIdx.x] = mine;
  __syncthreads();
  for (int s = kLanes / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] = add_rn(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kLanes) histogram_select_kernel(T* history, int64_t capacity, int64_t* state,
                                                                  const T* losses, const int64_t* keys,
                                                                  int64_t batch, Params prm, bool* keep, double* p) {
  // Draw i is keyed by keys[i] (a dataset index) when given, else by the position i.
  const auto draw = [&](int64_t i) {
    return philox::element_uniform(prm.seed, prm.offset, static_cast<uint64_t>(keys ? keys[i] : i), 0);
  };
  __shared__ double partial[kLanes];
  __shared__ double edges[kMaxBins + 1];
  __shared__ unsigned int counts[kMaxBins];
  __shared__ int64_t shared_length;
  __shared__ double shared_lo, shared_hi;
  __shared__ unsigned long long shared_n, shared_candidates;
  const int t = threadIdx.x;

  // 1. Append the batch to the ring buffer (one thread: it skips non-finite losses in order).
  if (t == 0) {
    int64_t length = state[0], pos = state[1];
    for (int64_t i = 0; i < batch; ++i) {
      if (!isfinite(static_cast<double>(losses[i]))) continue;
      history[pos] = losses[i];
      pos = pos + 1 == capacity ? 0 : pos + 1;
      length = length + 1 < capacity ? length + 1 : capacity;
    }
    state[0] = length;
    state[1] = pos;
    shared_length = length;
    shared_lo = std::numeric_limits<double>::infinity();
    shared_hi = -std::numeric_limits<double>::infinity();
    shared_n = 0;
    shared_candidates = 0;
  }
  __syncthreads();
  const int64_t length = shared_length;

  // 2. Moments of the raw history and the clip bounds.
  selection::ClipBounds bounds{0.0, 0.0, selection::kNoClip};
  if (prm.clip_mode != selection::kNoClip && length > 0) {
    double s = 0.0;
    for (int64_t j = t; j < length; j += kLanes) s = add_rn(s, static_cast<double>(history[j]));
    const double mean = div_rn(tree_sum(s, partial), static_cast<double>(length));
    double q = 0.0;
    for (int64_t j = t; j < length; j += kLanes) {
      const double d = sub_rn(static_cast<double>(history[j]), mean);
      q = add_rn(q, mul_rn(d, d));
    }
    const double var = div_rn(tree_sum(q, partial), static_cast<double>(length));
    bounds = selection::clip_bounds(mean, sqrt(var), prm.clip_sigma, prm.clip_mode);
  }

  // 3. Range and size of the clipped history (order-free reductions), edges, histogram.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  unsigned long long n_mine = 0;
  for (int64_t j = t; j < length; j += kLanes) {
    double c;
    if (selection::clip(static_cast<double>(history[j]), bounds, &c)) {
      lo = fmin(lo, c);
      hi = fmax(hi, c);
      ++n_mine;
    }
  }
  // Doubles have no atomicMin; their ordered bit patterns do (finite values, sign-flipped).
  const auto ordered = [](double v) {
    const long long bits = __double_as_longlong(v);
    return bits >= 0 ? bits : bits ^ 0x7fffffffffffffffLL;
  };
  __shared__ long long ordered_lo, ordered_hi;
  if (t == 0) {
    ordered_lo = ordered(std::numeric_limits<double>::infinity());
    ordered_hi = ordered(-std::numeric_limits<double>::infinity());
  }
  __syncthreads();
  atomicMin(&ordered_lo, ordered(lo));
  atomicMax(&ordered_hi, ordered(hi));
  atomicAdd(&shared_n, n_mine);
  __syncthreads();
  if (t == 0) {
    const auto unordered = [](long long bits) { return __longlong_as_double(bits >= 0 ? bits : bits ^ 0x7fffffffffffffffLL); };
    shared_lo = unordered(ordered_lo);
    shared_hi = unordered(ordered_hi);
  }
  __syncthreads();
  const int64_t n = static_cast<int64_t>(shared_n);
  int32_t k = 0;
  double denom = 0.0;
  if (n > 0 && prm.rule == selection::kPmf) {
    k = static_cast<int32_t>(binning::bin_count(prm.bin_rule, n, prm.bins));
    const binning::OuterEdges<double> outer = binning::outer_edges<double>(shared_lo, shared_hi);
    for (int32_t j = t; j <= k; j += kLanes) edges[j] = binning::linspace_edge<double>(j, k, outer.first, outer.last);
    for (int32_t j = t; j < k; j += kLanes) counts[j] = 0;
    denom = sub_rn(outer.last, outer.first);
    __syncthreads();
    const auto edge = [](int32_t j) { return edges[j]; };
    for (int64_t j = t; j < length; j += kLanes) {
      double c;
      if (!selection::clip(static_cast<double>(history[j]), bounds, &c)) continue;
      const int32_t b = binning::bin_index<double, double>(c, edge, k, denom);
      if (b >= 0) atomicAdd(&counts[b], 1u);
    }
    __syncthreads();
  }

  // 4. p of each batch loss, candidates, Bernoulli draws.
  const auto edge = [](int32_t j) { return edges[j]; };
  unsigned long long candidates_mine = 0;
  for (int64_t i = t; i < batch; i += kLanes) {
    const double v = static_cast<double>(losses[i]);
    double c, pi = 0.0;
    if (n > 0 && isfinite(v) && selection::clip(v, bounds, &c)) {
      if (prm.rule == selection::kPmf) {
        const int32_t b = binning::bin_index<double, double>(c, edge, k, denom);
        pi = b >= 0 ? div_rn(static_cast<double>(counts[b]), static_cast<double>(n)) : 0.0;
      } else {
        int64_t left = 0, right = 0;
        for (int64_t j = 0; j < length; ++j) {
          double h;
          if (!selection::clip(static_cast<double>(history[j]), bounds, &h)) continue;
          left += h < c;
          right += h <= c;
        }
        pi = selection::power(selection::percentile(left, right, n), prm.beta);
      }
    }
    p[i] = pi;
    const float u = draw(i);
    if (prm.rule == selection::kCdf) {
      keep[i] = static_cast<double>(u) < pi;
    } else if (prm.keep_mode == selection::kBernoulli) {
      keep[i] = pi > prm.threshold && static_cast<double>(u) < prm.keep_fraction;
    } else {
      candidates_mine += pi > prm.threshold;
    }
  }
  if (prm.rule == selection::kCdf || prm.keep_mode == selection::kBernoulli) return;

  // 5. Fraction and top modes: a candidate is kept if fewer than ceil(alpha * |C|) candidates
  // rank before it (O(batch^2 / kLanes) comparisons; batches are small).
  atomicAdd(&shared_candidates, candidates_mine);
  __syncthreads();
  const int64_t m = selection::kept_count(prm.keep_fraction, static_cast<int64_t>(shared_candidates));
  for (int64_t i = t; i < batch; i += kLanes) {
    const double pi = p[i];
    if (!(pi > prm.threshold)) {
      keep[i] = false;
      continue;
    }
    const float ui = draw(i);
    int64_t rank = 0;
    for (int64_t j = 0; j < batch && rank < m; ++j) {
      const double pj = p[j];
      if (j == i || !(pj > prm.threshold)) continue;
      const float uj = draw(j);
      rank += selection::ranks_before(prm.keep_mode, pj, uj, j, pi, ui, i);
    }
    keep[i] = rank < m;
  }
}

std::tuple<at::Tensor, at::Tensor> histogram_select_cuda(
    const at::Tensor& history, const at::Tensor& state, const at::Tensor& losses, int64_t rule, int64_t bin_rule,
    int64_t bins, double threshold, double clip_sigma, int64_t clip_mode, double keep_fraction, int64_t keep_mode,
    double beta, bool skip_nonfinite, int64_t seed, int64_t offset, const std::optional<at::Tensor>& keys) {
  checks::histogram_select(history, state, losses, rule, bin_rule, bins, threshold, clip_sigma, clip_mode,
                           keep_fraction, keep_mode, beta, keys);
  TORCH_CHECK(history.is_cuda(), "histogram_select: history must be a CUDA tensor, got ", history.device());
  const c10::cuda::OptionalCUDAGuard guard(history.device());
  const at::Tensor x = losses.contiguous();
  const int64_t batch = x.numel();
  at::Tensor keep = at::empty({batch}, x.options().dtype(at::kBool));
  at::Tensor p = at::empty({batch}, x.options().dtype(at::kDouble));
  // Non-finite losses are always skipped here: raising on them would need a host sync, so the
  // Python layer checks them first unless it asked to skip them (skip_nonfinite).
  (void)skip_nonfinite;
  const Params prm{rule, bin_rule, bins, clip_mode, keep_mode, seed, offset, threshold, clip_sigma, keep_fraction, beta};
  const at::Tensor key_tensor = keys.has_value() ? keys->contiguous() : at::Tensor();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "histogram_select_cuda", [&] {
    histogram_select_kernel<scalar_t><<<1, kLanes, 0, stream>>>(
        history.mutable_data_ptr<scalar_t>(), history.numel(), state.mutable_data_ptr<int64_t>(),
        x.const_data_ptr<scalar_t>(), keys.has_value() ? key_tensor.const_data_ptr<int64_t>() : nullptr, batch, prm,
        keep.mutable_data_ptr<bool>(), p.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {keep, p};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("histogram_select", &histogram_select_cuda);
}

}  // namespace dsampling
