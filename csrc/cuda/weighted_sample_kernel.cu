// weighted_sample on CUDA, a twin of the CPU kernel (common/weighted.h): the largest weight (an
// exact atomicMax), the scale, exact 64-bit tile sums (a warp per tile of 32), their total and
// the final scale, cub's exclusive scan of the tile sums, the guide table, then a thread per
// draw. Integer sums are exact in any order, so every step gives the CPU's bits. The scales and
// the total stay on the device (a small parameter tensor): no host sync. Weights that are
// negative, NaN or Inf, or all zero, trip a device assertion (as torch.multinomial's CUDA kernel
// does), since raising would need a host sync.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>

#include "common/checks.h"
#include "common/weighted.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

static_assert(weighted::kTile == cuda::kWarp, "a warp sums a tile");

// Slots of the parameter tensor (int64 on the device).
enum Param : int { kMaxBits = 0, kFirstShift, kFirstTotal, kShift, kShiftBucket, kBuckets, kParams };

template <typename T>
__global__ void max_weight_kernel(const T* w, int64_t n, unsigned long long* max_bits) {
  double m = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(w[i]);
    CUDA_KERNEL_ASSERT(v >= 0.0 && isfinite(v) && "weighted_sample: weights must be finite and >= 0");
    m = v > m ? v : m;
  }
  for (int o = cuda::kWarp / 2; o > 0; o >>= 1) {
    const double other = __shfl_xor_sync(cuda::kFullMask, m, o);
    m = other > m ? other : m;
  }
  // Non-negative doubles order as their bit patterns: an exact maximum in any order.
  if (threadIdx.x % cuda::kWarp == 0) atomicMax(max_bits, static_cast<unsigned long long>(__double_as_longlong(m)));
}

__global__ void first_shift_kernel(int64_t* params, int64_t n) {
  const double m = __longlong_as_double(params[kMaxBits]);
  CUDA_KERNEL_ASSERT(m > 0.0 && "weighted_sample: weights must have a positive sum");
  params[kFirstShift] = weighted::first_shift(m, n);
}

__global__ void final_shift_kernel(int64_t* params, int64_t n) {
  params[kShift] = weighted::final_shift(params[kFirstShift], static_cast<uint64_t>(params[kFirstTotal]), n);
}

// sums[t] = the fixed-point sum of tile t at the scale params[shift_slot]; with skip_if_unchanged,
// nothing when that scale equals the first one (the sums are already there).
template <typename T>
__global__ void tile_sums_kernel(const T* w, int64_t n, int64_t tiles, const int64_t* params, int shift_slot,
                                 bool skip_if_unchanged, uint64_t* sums) {
  if (skip_if_unchanged && params[kShift] == params[kFirstShift]) return;
  const weighted::Scale scale = weighted::scale_of(params[shift_slot]);
  const int lane = threadIdx.x % cuda::kWarp;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / cuda::kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / cuda::kWarp;
  for (int64_t t = warp; t < tiles; t += warps) {  // warp-uniform
    const int64_t i = t * weighted::kTile + lane;
    unsigned long long q = i < n ? weighted::fixed(static_cast<double>(w[i]), scale) : 0;
    for (int o = cuda::kWarp / 2; o > 0; o >>= 1) q += __shfl_xor_sync(cuda::kFullMask, q, o);
    if (lane == 0) sums[t] = q;
  }
}

__global__ void guide_params_kernel(int64_t* params, const uint64_t* prefix, int64_t tiles, int bits) {
  const uint64_t total = prefix[tiles];  // 0 only past a failed assertion (all weights zero)
  const weighted::Guide g = total > 0 ? weighted::guide_of(total, bits) : weighted::Guide{0, 0};
  params[kShiftBucket] = g.shift;
  params[kBuckets] = g.buckets;
}

// A thread per bucket: guide[b] is the last tile whose first bucket is <= b, the tile whose range
// holds the point b << shift (a tile of zero sum owns no bucket, and prefix[0] = 0 owns bucket 0),
// found by a binary search over the prefix sums. The same table as the CPU twin's walk over each
// tile's buckets, which on a GPU left one thread writing ~all 2^bits buckets of one dominant weight.
__global__ void guide_kernel(const uint64_t* prefix, int64_t tiles, const int64_t* params, int64_t* guide) {
  const int shift = static_cast<int>(params[kShiftBucket]);
  const int64_t buckets = params[kBuckets];
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < buckets;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = tiles - 1;  // invariant: first_bucket(prefix[lo]) <= b, the answer in [lo, hi]
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (weighted::first_bucket(prefix[mid], shift) <= b) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    guide[b] = lo;
  }
}

template <typename T>
__global__ void draw_kernel(const T* w, int64_t n, int64_t tiles, const uint64_t* prefix, const int64_t* guide,
                            const int64_t* params, int64_t num_samples, int64_t seed, int64_t offset,
                            int64_t* indices, double* probs) {
  const uint64_t total = prefix[tiles];
  const weighted::Guide g{static_cast<int>(params[kShiftBucket]), params[kBuckets]};
  const weighted::Scale scale = weighted::scale_of(params[kShift]);
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < num_samples;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (total == 0) {  // only where device assertions are compiled out
      indices[j] = -1;
      probs[j] = NAN;
      continue;
    }
    const uint64_t u = weighted::draw_point(seed, offset, j, total);
    const int64_t t = weighted::find_tile(prefix, guide, g, tiles, u);
    uint64_t q = 0;
    indices[j] = weighted::find_in_tile(w, n, t, u - prefix[t], scale, &q);
    probs[j] = weighted::probability(q, total);
  }
}

std::tuple<at::Tensor, at::Tensor> weighted_sample_cuda(const at::Tensor& weights, int64_t num_samples, int64_t seed,
                                                        int64_t offset) {
  checks::weighted_sample(weights, num_samples);
  TORCH_CHECK(weights.is_cuda(), "weighted_sample: weights must be a CUDA tensor, got ", weights.device());
  const c10::cuda::OptionalCUDAGuard guard(weights.device());
  const at::Tensor w = weights.contiguous();
  const int64_t n = w.numel();
  const at::TensorOptions options = w.options();
  at::Tensor indices = at::empty({num_samples}, options.dtype(at::kLong));
  at::Tensor probs = at::empty({num_samples}, options.dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t tiles = (n + weighted::kTile - 1) / weighted::kTile;
  const int bits = weighted::guide_bits(tiles);
  at::Tensor params = at::zeros({kParams}, options.dtype(at::kLong));
  at::Tensor sums = at::zeros({tiles + 1}, options.dtype(at::kLong));  // the last stays 0: prefix[tiles] = T
  at::Tensor prefix = at::empty({tiles + 1}, options.dtype(at::kLong));
  at::Tensor guide = at::empty({int64_t{1} << bits}, options.dtype(at::kLong));
  int64_t* pp = params.mutable_data_ptr<int64_t>();
  uint64_t* sp = reinterpret_cast<uint64_t*>(sums.mutable_data_ptr<int64_t>());
  uint64_t* prep = reinterpret_cast<uint64_t*>(prefix.mutable_data_ptr<int64_t>());
  int64_t* gp = guide.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "weighted_sample_cuda", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    max_weight_kernel<<<cuda::grid_size(n), cuda::kThreads, 0, stream>>>(
        wp, n, reinterpret_cast<unsigned long long*>(pp + kMaxBits));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    first_shift_kernel<<<1, 1, 0, stream>>>(pp, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int sum_grid = cuda::grid_size(tiles * cuda::kWarp);
    tile_sums_kernel<<<sum_grid, cuda::kThreads, 0, stream>>>(wp, n, tiles, pp, kFirstShift, false, sp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    size_t bytes = 0;
    uint64_t* first_total = reinterpret_cast<uint64_t*>(pp + kFirstTotal);
    C10_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes, sp, first_total, tiles, stream));
    at::Tensor temp = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
    C10_CUDA_CHECK(cub::DeviceReduce::Sum(temp.mutable_data_ptr(), bytes, sp, first_total, tiles, stream));
    final_shift_kernel<<<1, 1, 0, stream>>>(pp, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    tile_sums_kernel<<<sum_grid, cuda::kThreads, 0, stream>>>(wp, n, tiles, pp, kShift, true, sp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    bytes = 0;
    C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, sp, prep, tiles + 1, stream));
    temp = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
    C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.mutable_data_ptr(), bytes, sp, prep, tiles + 1, stream));
    guide_params_kernel<<<1, 1, 0, stream>>>(pp, prep, tiles, bits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    guide_kernel<<<cuda::grid_size(int64_t{1} << bits), cuda::kThreads, 0, stream>>>(prep, tiles, pp, gp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (num_samples > 0) {
      draw_kernel<<<cuda::grid_size(num_samples), cuda::kThreads, 0, stream>>>(
          wp, n, tiles, prep, gp, pp, num_samples, seed, offset, indices.mutable_data_ptr<int64_t>(),
          probs.mutable_data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {indices, probs};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("weighted_sample", &weighted_sample_cuda);
}

}  // namespace dsampling
