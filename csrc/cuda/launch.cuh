// Launch-shape helpers for the CUDA kernels (CUDA only).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace dsampling {
namespace cuda {

constexpr int kThreads = 256;

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Enough blocks to fill the device a few times over; kernels use grid-stride loops beyond that.
inline int grid_size(int64_t n, int blocks_per_sm = 4) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  const int64_t cap = static_cast<int64_t>(std::max(sms, 1)) * blocks_per_sm;
  return static_cast<int>(std::max<int64_t>(1, std::min(ceil_div(n, kThreads), cap)));
}

}  // namespace cuda
}  // namespace dsampling
