// partition_resample and random_subset_ on CUDA: the partial Fisher-Yates shuffles of the CPU
// twin, run by one thread each (each swap depends on the previous ones), so the swaps are the
// same as on the CPU. O(k) serial work on the device and no host round-trip; latency-bound, so
// best for the per-epoch resampling it is meant for, not for inner loops.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/philox.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

__global__ void partition_resample_kernel(int64_t* perm, int64_t n, int64_t size, int64_t k, int64_t seed,
                                          int64_t offset) {
  // Thread 0 shuffles the front of A, thread 1 the front of B; then all trade the fronts.
  if (threadIdx.x == 0) philox::partial_shuffle(perm, size, k, seed, offset, 0);
  if (threadIdx.x == 1) philox::partial_shuffle(perm + size, n - size, k, seed, offset, 1);
  __syncthreads();
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const int64_t t = perm[i];
    perm[i] = perm[size + i];
    perm[size + i] = t;
  }
}

__global__ void random_subset_kernel(int64_t* perm, int64_t n, int64_t size, int64_t seed, int64_t offset) {
  philox::partial_shuffle(perm, n, size, seed, offset, 0);
}

void partition_resample_cuda(const at::Tensor& perm, int64_t size, int64_t k, int64_t seed, int64_t offset) {
  checks::partition_resample(perm, size, k);
  TORCH_CHECK(perm.is_cuda(), "partition_resample: perm must be a CUDA tensor, got ", perm.device());
  const c10::cuda::OptionalCUDAGuard guard(perm.device());
  if (k == 0) return;
  partition_resample_kernel<<<1, cuda::kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      perm.mutable_data_ptr<int64_t>(), perm.numel(), size, k, seed, offset);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void random_subset_cuda(const at::Tensor& perm, int64_t size, int64_t seed, int64_t offset) {
  checks::random_subset(perm, size);
  TORCH_CHECK(perm.is_cuda(), "random_subset_: perm must be a CUDA tensor, got ", perm.device());
  const c10::cuda::OptionalCUDAGuard guard(perm.device());
  if (size == 0) return;
  random_subset_kernel<<<1, 1, 0, c10::cuda::getCurrentCUDAStream()>>>(perm.mutable_data_ptr<int64_t>(),
                                                                        perm.numel(), size, seed, offset);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("partition_resample", &partition_resample_cuda);
  m.impl("random_subset_", &random_subset_cuda);
}

}  // namespace dsampling
