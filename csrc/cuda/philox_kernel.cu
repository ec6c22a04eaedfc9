#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/philox.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

__global__ void philox_fill_uniform_kernel(float* out, int64_t n, int64_t seed, int64_t offset) {
  const int64_t num_blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < num_blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const philox::Block block = philox::stream_block(seed, offset, static_cast<uint64_t>(b));
    for (int w = 0; w < 4 && 4 * b + w < n; ++w) out[4 * b + w] = philox::to_uniform(block.v[w]);
  }
}

__global__ void philox4x32_10_kernel(const int64_t* in, int64_t* out, int64_t rows, int64_t seed) {
  const uint64_t key = static_cast<uint64_t>(seed);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    philox::Block block;
    for (int w = 0; w < 4; ++w) block.v[w] = static_cast<uint32_t>(in[4 * r + w]);
    block = philox::philox4x32_10(block, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
    for (int w = 0; w < 4; ++w) out[4 * r + w] = block.v[w];
  }
}

void philox_fill_uniform_cuda(const at::Tensor& out, int64_t seed, int64_t offset) {
  checks::philox_fill_uniform(out);
  TORCH_CHECK(out.is_cuda(), "philox_fill_uniform_: out must be a CUDA tensor, got ", out.device());
  const c10::cuda::OptionalCUDAGuard guard(out.device());
  const int64_t n = out.numel();
  if (n == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  philox_fill_uniform_kernel<<<cuda::grid_size((n + 3) / 4), cuda::kThreads, 0, stream>>>(
      out.mutable_data_ptr<float>(), n, seed, offset);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor philox4x32_10_cuda(const at::Tensor& counter, int64_t seed) {
  checks::philox4x32_10(counter);
  const c10::cuda::OptionalCUDAGuard guard(counter.device());
  const at::Tensor ctr = counter.contiguous();
  at::Tensor out = at::empty_like(ctr);
  const int64_t rows = ctr.size(0);
  if (rows == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  philox4x32_10_kernel<<<cuda::grid_size(rows), cuda::kThreads, 0, stream>>>(
      ctr.const_data_ptr<int64_t>(), out.mutable_data_ptr<int64_t>(), rows, seed);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("philox_fill_uniform_", &philox_fill_uniform_cuda);
  m.impl("_philox4x32_10", &philox4x32_10_cuda);
}

}  // namespace dsampling
