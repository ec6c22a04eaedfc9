// histogram_select on CUDA: the whole selection in one launch of one block of kLanes threads
// (the history is at most 65536 values, 512-4096 in practice). The per-element math and the
// summation order are those of the CPU twin (common/selection.h), so keep masks and p agree to
// the bit. No host sync: the state tensor holds the ring buffer's length and write position.
//   1. append: a block scan ranks the batch's finite losses; rank r goes to slot
//      (pos + r) % capacity (of a batch longer than the buffer only the last `capacity` are written);
//   2. moments: lane sums and a tree in the CPU's order;
//   3. pmf: range, edges and a shared-memory histogram of the clipped history; cdf: the clipped
//      history sorted once (bitonic, in shared memory when the device has room, else in a
//      global scratch buffer), then every loss binary-searches it;
//   4. p, draws (each drawn once), the Bernoulli decisions, or rank keys into a scratch buffer;
//   5. fraction / top: a radix select of the kept_count-th smallest rank key (8-bit digits), then
//      a block scan breaks ties among equal keys by index, as the CPU's (key, index) order does.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <cub/block/block_scan.cuh>
#include <limits>

#include "common/binning.h"
#include "common/checks.h"
#include "common/philox.h"
#include "common/selection.h"
#include "cuda/lane_sum.cuh"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

using selection::kLanes;
using selection::kMaxBins;

constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
static_assert(kDigits == kLanes, "the radix select gives each digit one thread");

using BlockScan = cub::BlockScan<int64_t, kLanes>;

struct Params {
  int64_t rule, bin_rule, bins, clip_mode, keep_mode, seed, offset;
  double threshold, clip_sigma, keep_fraction, beta;
};

// Exclusive prefix sum of a flag over the block, one tile of kLanes items at a time: returns the
// number of flags before this thread's, and adds the tile's total to `carry` (on every thread).
__device__ int64_t tile_rank(bool flag, int64_t& carry, BlockScan::TempStorage& storage) {
  int64_t rank, tile;
  BlockScan(storage).ExclusiveSum(static_cast<int64_t>(flag), rank, tile);
  __syncthreads();  // the storage is reused by the next tile
  const int64_t before = carry + rank;
  carry += tile;
  return before;
}

// Ascending bitonic sort of a[0, size) by the whole block; size is a power of two.
__device__ void block_bitonic_sort(double* a, int64_t size) {
  for (int64_t k = 2; k <= size; k <<= 1) {
    for (int64_t j = k >> 1; j > 0; j >>= 1) {
      for (int64_t q = threadIdx.x; q < size / 2; q += kLanes) {
        const int64_t i = ((q & ~(j - 1)) << 1) | (q & (j - 1));  // i has bit j clear; its partner is i + j
        const double x = a[i], y = a[i + j];
        if ((i & k) == 0 ? x > y : x < y) {
          a[i] = y;
          a[i + j] = x;
        }
      }
      __syncthreads();
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kLanes) histogram_select_kernel(T* history, int64_t capacity, int64_t* state,
                                                                  const T* losses, const int64_t* keys,
                                                                  int64_t batch, Params prm, double* sort_scratch,
                                                                  uint64_t* rank_keys, bool* keep, double* p) {
  // Draw i is keyed by keys[i] (a dataset index) when given, else by the position i.
  const auto draw = [&](int64_t i) {
    return philox::element_uniform(prm.seed, prm.offset, static_cast<uint64_t>(keys ? keys[i] : i), 0);
  };
  extern __shared__ __align__(16) unsigned char dynamic_shared[];
  __shared__ BlockScan::TempStorage scan_storage;
  __shared__ double partial[kLanes];
  __shared__ double edges[kMaxBins + 1];
  __shared__ unsigned int counts[kMaxBins];  // the histogram (pmf), then the digit counts (fraction, top)
  __shared__ unsigned long long shared_n;
  __shared__ long long ordered_lo, ordered_hi;
  __shared__ int64_t shared_digit, shared_below;
  const int t = threadIdx.x;

  // 1. Append the batch to the ring buffer; the valid slots are always [0, length).
  const int64_t length0 = state[0], pos0 = state[1];
  CUDA_KERNEL_ASSERT(length0 >= 0 && length0 <= capacity && pos0 >= 0 && pos0 < capacity &&
                     "histogram_select: state must hold a length in [0, capacity] and a write position in [0, capacity)");
  int64_t appended = 0;
  for (int64_t base = 0; base < batch; base += kLanes) {
    appended += __syncthreads_count(base + t < batch && isfinite(static_cast<double>(losses[base + t])));
  }
  const int64_t overwritten = appended > capacity ? appended - capacity : 0;
  int64_t carry = 0;
  for (int64_t base = 0; base < batch; base += kLanes) {
    const int64_t i = base + t;
    const bool finite = i < batch && isfinite(static_cast<double>(losses[i]));
    const int64_t r = tile_rank(finite, carry, scan_storage);
    if (finite && r >= overwritten) history[(pos0 + r) % capacity] = losses[i];
  }
  const int64_t length = length0 + appended < capacity ? length0 + appended : capacity;
  if (t == 0) {
    ordered_lo = std::numeric_limits<long long>::max();
    ordered_hi = std::numeric_limits<long long>::min();
    shared_n = 0;
  }
  __syncthreads();  // every thread has read the state and written its slots
  if (t == 0) {
    state[0] = length;
    state[1] = (pos0 + appended) % capacity;
  }

  // 2. Moments of the raw history and the clip bounds.
  selection::ClipBounds bounds{0.0, 0.0, selection::kNoClip};
  if (prm.clip_mode != selection::kNoClip && length > 0) {
    double s = 0.0;
    for (int64_t j = t; j < length; j += kLanes) s = add_rn(s, static_cast<double>(history[j]));
    const double mean = div_rn(cuda::lane_tree_sum(s, partial), static_cast<double>(length));
    double q = 0.0;
    for (int64_t j = t; j < length; j += kLanes) {
      const double d = sub_rn(static_cast<double>(history[j]), mean);
      q = add_rn(q, mul_rn(d, d));
    }
    const double var = div_rn(cuda::lane_tree_sum(q, partial), static_cast<double>(length));
    bounds = selection::clip_bounds(mean, sqrt(var), prm.clip_sigma, prm.clip_mode);
  }

  // 3. Range and size of the clipped history (order-free reductions).
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
  const auto unordered = [](long long bits) {
    return __longlong_as_double(bits >= 0 ? bits : bits ^ 0x7fffffffffffffffLL);
  };
  atomicMin(&ordered_lo, ordered(lo));
  atomicMax(&ordered_hi, ordered(hi));
  atomicAdd(&shared_n, n_mine);
  __syncthreads();
  const int64_t n = static_cast<int64_t>(shared_n);

  // The pmf's edges and histogram, or the cdf's sorted clipped history (+inf past its n values).
  int32_t k = 0;
  double denom = 0.0;
  double* sorted = sort_scratch != nullptr ? sort_scratch : reinterpret_cast<double*>(dynamic_shared);
  if (n > 0 && prm.rule == selection::kPmf) {
    k = static_cast<int32_t>(binning::bin_count(prm.bin_rule, n, prm.bins));
    const binning::OuterEdges<double> outer = binning::outer_edges<double>(unordered(ordered_lo), unordered(ordered_hi));
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
  } else if (n > 0) {
    int64_t size = 1;
    while (size < length) size <<= 1;
    for (int64_t j = t; j < size; j += kLanes) {
      double c;
      const bool inside = j < length && selection::clip(static_cast<double>(history[j]), bounds, &c);
      sorted[j] = inside ? c : std::numeric_limits<double>::infinity();
    }
    __syncthreads();
    block_bitonic_sort(sorted, size);
  }

  // 4. p of each batch loss, its draw, and the Bernoulli decisions or the rank keys.
  const bool ranked = prm.rule == selection::kPmf && prm.keep_mode != selection::kBernoulli;
  const auto edge = [](int32_t j) { return edges[j]; };
  for (int64_t i = t; i < batch; i += kLanes) {
    const double v = static_cast<double>(losses[i]);
    double c, pi = 0.0;
    int64_t count = 0;
    if (n > 0 && isfinite(v) && selection::clip(v, bounds, &c)) {
      if (prm.rule == selection::kPmf) {
        const int32_t b = binning::bin_index<double, double>(c, edge, k, denom);
        count = b >= 0 ? counts[b] : 0;
        pi = b >= 0 ? div_rn(static_cast<double>(count), static_cast<double>(n)) : 0.0;
      } else {
        const selection::Ranks r = selection::rank_counts(sorted, n, c);
        pi = selection::power(selection::percentile(r.left, r.right, n), prm.beta);
      }
    }
    p[i] = pi;
    const float u = draw(i);
    if (prm.rule == selection::kCdf) {
      keep[i] = static_cast<double>(u) < pi;
    } else if (!ranked) {
      keep[i] = pi > prm.threshold && static_cast<double>(u) < prm.keep_fraction;
    } else {
      rank_keys[i] = pi > prm.threshold ? selection::rank_key(prm.keep_mode, count, u) : selection::kNotCandidate;
    }
  }
  if (!ranked) return;

  // 5. Fraction and top modes: keep the first m = ceil(alpha * |C|) candidates in (key, index)
  // order. A radix select finds the m-th smallest key K, digit by digit from the top, and how
  // many of the candidates with key K are kept (the first ones by index).
  __syncthreads();  // the rank keys of every thread are written
  int64_t candidates = 0;
  for (int64_t base = 0; base < batch; base += kLanes) {
    candidates += __syncthreads_count(base + t < batch && rank_keys[base + t] != selection::kNotCandidate);
  }
  const int64_t kept = selection::kept_count(prm.keep_fraction, candidates);
  int64_t remaining = kept < candidates ? kept : candidates;  // kept among the keys matching `prefix`
  uint64_t prefix = 0;
  if (remaining > 0) {
    constexpr int kTop = (selection::kRankKeyBits + kDigitBits - 1) / kDigitBits * kDigitBits - kDigitBits;
    for (int shift = kTop; shift >= 0; shift -= kDigitBits) {
      counts[t] = 0;
      __syncthreads();
      const uint64_t high = ~uint64_t{0} << (shift + kDigitBits);  // shift + kDigitBits < 64
      for (int64_t i = t; i < batch; i += kLanes) {
        const uint64_t key = rank_keys[i];
        if (key != selection::kNotCandidate && (key & high) == prefix) {
          atomicAdd(&counts[(key >> shift) & (kDigits - 1)], 1u);
        }
      }
      __syncthreads();
      int64_t through;  // candidates matching the prefix with a digit <= t
      BlockScan(scan_storage).InclusiveSum(static_cast<int64_t>(counts[t]), through);
      const int64_t below = through - counts[t];
      if (below < remaining && remaining <= through) {
        shared_digit = t;
        shared_below = below;
      }
      __syncthreads();
      prefix |= static_cast<uint64_t>(shared_digit) << shift;
      remaining -= shared_below;
      __syncthreads();  // shared_digit, shared_below and counts are rewritten next round
    }
  }
  // Keep the keys below K, and the first `remaining` keys equal to K by index (none if m = 0).
  carry = 0;
  for (int64_t base = 0; base < batch; base += kLanes) {
    const int64_t i = base + t;
    const uint64_t key = i < batch ? rank_keys[i] : selection::kNotCandidate;
    const bool tie = key == prefix && remaining > 0;
    const int64_t before = tile_rank(tie, carry, scan_storage);
    if (i < batch) keep[i] = (remaining > 0 && key < prefix) || (tie && before < remaining);
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
  const at::Tensor key_tensor = keys.has_value() ? keys->contiguous() : at::Tensor();
  const int64_t batch = x.numel();
  const int64_t capacity = history.numel();
  at::Tensor keep = at::empty({batch}, x.options().dtype(at::kBool));
  at::Tensor p = at::empty({batch}, x.options().dtype(at::kDouble));
  // Non-finite losses are always skipped here: raising on them would need a host sync, so the
  // Python layer checks them first unless it asked to skip them (skip_nonfinite).
  (void)skip_nonfinite;
  const Params prm{rule, bin_rule, bins, clip_mode, keep_mode, seed, offset, threshold, clip_sigma, keep_fraction, beta};
  const bool ranked = rule == selection::kPmf && keep_mode != selection::kBernoulli;
  at::Tensor rank_keys = ranked ? at::empty({batch}, x.options().dtype(at::kLong)) : at::Tensor();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "histogram_select_cuda", [&] {
    // The cdf rule sorts the clipped history, padded to a power of two, in shared memory if the
    // device has room beside the kernel's static shared memory, else in a global buffer.
    size_t sort_bytes = 0;
    at::Tensor sort_scratch;
    if (rule == selection::kCdf) {
      int64_t size = 1;
      while (size < capacity) size <<= 1;
      sort_bytes = static_cast<size_t>(size) * sizeof(double);
      if (!cuda::reserve_dynamic_shared(histogram_select_kernel<scalar_t>, sort_bytes)) {
        sort_scratch = at::empty({size}, x.options().dtype(at::kDouble));
        sort_bytes = 0;
      }
    }
    histogram_select_kernel<scalar_t><<<1, kLanes, sort_bytes, stream>>>(
        history.mutable_data_ptr<scalar_t>(), capacity, state.mutable_data_ptr<int64_t>(),
        x.const_data_ptr<scalar_t>(), keys.has_value() ? key_tensor.const_data_ptr<int64_t>() : nullptr, batch, prm,
        sort_scratch.defined() ? sort_scratch.mutable_data_ptr<double>() : nullptr,
        ranked ? reinterpret_cast<uint64_t*>(rank_keys.mutable_data_ptr<int64_t>()) : nullptr,
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
