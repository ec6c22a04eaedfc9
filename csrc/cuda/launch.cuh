// Launch-shape helpers for the CUDA kernels (CUDA only).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

#include <cub/version.cuh>

// setup.py refuses toolkits older than CUDA 12.8 (_cuda_env.MIN_TOOLKIT); this catches any other
// route to an older cub, whose device-wide algorithms would truncate N >= 2**31 (NVIDIA/cccl#2400).
#if CUB_VERSION < 200700
#error "dsampling_ext: the CUDA kernels need CCCL >= 2.7 (CUDA >= 12.8): older cub truncates 64-bit item counts"
#endif

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>

namespace dsampling {
namespace cuda {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// What the launches need to know of a device, queried once per device and process. (ATen's own
// cache, at::cuda::getCurrentDeviceProperties, lives in a header that needs the cuBLAS and
// cuSPARSE headers, which a bare CUDA toolkit does not have.)
struct DeviceLimits {
  int sms;
  size_t shared_per_block_optin;
};

inline const DeviceLimits& current_device_limits() {
  static const int count = c10::cuda::device_count();
  static const std::unique_ptr<std::once_flag[]> once(new std::once_flag[count]);
  static const std::unique_ptr<DeviceLimits[]> limits(new DeviceLimits[count]);
  const int device = c10::cuda::current_device();
  std::call_once(once[device], [device] {
    int sms = 0, optin = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    limits[device] = {sms, static_cast<size_t>(optin)};
  });
  return limits[device];
}

// Enough blocks to fill the device a few times over; kernels use grid-stride loops beyond that.
inline int grid_size(int64_t n, int blocks_per_sm = 4) {
  const int64_t cap = static_cast<int64_t>(std::max(current_device_limits().sms, 1)) * blocks_per_sm;
  return static_cast<int>(std::max<int64_t>(1, std::min(ceil_div(n, kThreads), cap)));
}

// Lets `kernel` take `bytes` of dynamic shared memory on the current device, opting in above the
// 48 KB default where the device allows more (sharedMemPerBlockOptin). False if it cannot.
template <typename Kernel>
bool reserve_dynamic_shared(Kernel* kernel, size_t bytes) {
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  if (attr.sharedSizeBytes + bytes > current_device_limits().shared_per_block_optin) return false;
  if (bytes > static_cast<size_t>(attr.maxDynamicSharedSizeBytes)) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
  return true;
}

}  // namespace cuda
}  // namespace dsampling
