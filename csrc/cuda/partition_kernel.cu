// partition_resample and random_subset_ on CUDA: the partial Fisher-Yates shuffles of the CPU
// twin, with the same swaps. The swap targets do not depend on the swaps, so one kernel draws
// them all in parallel (the Philox work); the swaps themselves depend on each other and run in
// order in one thread per shuffle (a dependent read per step, no random-number work); the
// partition's two fronts then trade places in parallel. No host round-trip: latency-bound, so
// meant for the per-epoch resampling, not for inner loops (make gpu-check times it against
// torch.randperm).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/philox.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

// targets[s * k + i] = the swap target of step i of shuffle s (s < sides), over a range of
// length[s] elements with the draws of word pair s.
__global__ void swap_targets_kernel(int64_t* targets, int64_t k, int sides, int64_t length0, int64_t length1,
                                    int64_t seed, int64_t offset) {
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < sides * k;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int side = q >= k ? 1 : 0;
    const int64_t i = q - side * k;
    const uint64_t bits = philox::element_bits(seed, offset, static_cast<uint64_t>(i), side);
    targets[q] = philox::swap_target(bits, i, side == 0 ? length0 : length1);
  }
}

// The swaps of shuffle s, in order, by the first lane of warp s (so that two shuffles run side by
// side rather than one after the other in a diverged warp); shuffle s works on data + s * base.
__global__ void swap_kernel(int64_t* data, const int64_t* targets, int64_t k, int sides, int64_t base) {
  const int side = threadIdx.x / cuda::kWarp;
  if (threadIdx.x % cuda::kWarp != 0 || side >= sides) return;
  int64_t* d = data + side * base;
  const int64_t* target = targets + side * k;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = target[i];
    const int64_t t = d[i];
    d[i] = d[j];
    d[j] = t;
  }
}

// perm[0, k) and perm[size, size + k) trade places.
__global__ void swap_fronts_kernel(int64_t* perm, int64_t size, int64_t k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < k;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = perm[i];
    perm[i] = perm[size + i];
    perm[size + i] = t;
  }
}

void partition_resample_cuda(const at::Tensor& perm, int64_t size, int64_t k, int64_t seed, int64_t offset) {
  checks::partition_resample(perm, size, k);
  TORCH_CHECK(perm.is_cuda(), "partition_resample: perm must be a CUDA tensor, got ", perm.device());
  const c10::cuda::OptionalCUDAGuard guard(perm.device());
  if (k == 0) return;
  at::Tensor targets = at::empty({2 * k}, perm.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  int64_t* p = perm.mutable_data_ptr<int64_t>();
  // k random members of A = perm[:size] to its front, k random members of B = perm[size:] to
  // its front, then the two fronts trade places: |A| stays size and perm stays a permutation.
  swap_targets_kernel<<<cuda::grid_size(2 * k), cuda::kThreads, 0, stream>>>(
      targets.mutable_data_ptr<int64_t>(), k, 2, size, perm.numel() - size, seed, offset);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  swap_kernel<<<1, 2 * cuda::kWarp, 0, stream>>>(p, targets.const_data_ptr<int64_t>(), k, 2, size);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  swap_fronts_kernel<<<cuda::grid_size(k), cuda::kThreads, 0, stream>>>(p, size, k);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void random_subset_cuda(const at::Tensor& perm, int64_t size, int64_t seed, int64_t offset) {
  checks::random_subset(perm, size);
  TORCH_CHECK(perm.is_cuda(), "random_subset_: perm must be a CUDA tensor, got ", perm.device());
  const c10::cuda::OptionalCUDAGuard guard(perm.device());
  if (size == 0) return;
  at::Tensor targets = at::empty({size}, perm.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  swap_targets_kernel<<<cuda::grid_size(size), cuda::kThreads, 0, stream>>>(
      targets.mutable_data_ptr<int64_t>(), size, 1, perm.numel(), 0, seed, offset);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  swap_kernel<<<1, cuda::kWarp, 0, stream>>>(perm.mutable_data_ptr<int64_t>(), targets.const_data_ptr<int64_t>(),
                                              size, 1, 0);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("partition_resample", &partition_resample_cuda);
  m.impl("random_subset_", &random_subset_cuda);
}

}  // namespace dsampling
