// gradnorm_scores on CUDA, a twin of the CPU kernel (common/gradnorm.h): each row gets
// G = argmax::group_width(C) lanes of a warp (as argmax_mismatch), lane t adding the terms
// j = t, t + G, ..., the lanes merged by the shuffle tree the CPU emulates. The group sums then
// go without atomics, so that they are the CPU's to the bit: each thread owns a group and walks
// the rows in order, a shared-memory chunk at a time (B * G / threads steps: made for batches).
// No host sync; a label or group out of range trips a device assertion.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/argmax.h"
#include "common/checks.h"
#include "common/gradnorm.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

template <typename T, typename A, typename L>
__global__ void scores_kernel(const T* logits, const L* labels, int64_t rows, int64_t classes, int group, A* scores) {
  const int lane = threadIdx.x % group;
  const int64_t rows_per_warp = cuda::kWarp / group;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / cuda::kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / cuda::kWarp;
  for (int64_t base = warp * rows_per_warp; base < rows; base += warps * rows_per_warp) {  // warp-uniform
    const int64_t r = base + (threadIdx.x % cuda::kWarp) / group;
    const bool active = r < rows;
    const T* row = logits + (active ? r : 0) * classes;
    const int64_t y = active ? static_cast<int64_t>(labels[r]) : 0;
    CUDA_KERNEL_ASSERT(y >= 0 && y < classes && "gradnorm_scores: labels must be in [0, C)");
    A m = static_cast<A>(row[0]);
    if (active) {
      for (int64_t j = lane; j < classes; j += group) {
        const A v = static_cast<A>(row[j]);
        m = v > m ? v : m;
      }
    }
    for (int o = group / 2; o > 0; o >>= 1) {
      const A other = __shfl_xor_sync(cuda::kFullMask, m, o, group);
      m = other > m ? other : m;
    }
    gradnorm::Sums<A> s{A(0), A(0), A(0)};
    if (active) {
      for (int64_t j = lane; j < classes; j += group) {
        gradnorm::add_term(s, gradnorm::scaled_exp(static_cast<A>(row[j]), m), j == y);
      }
    }
    for (int o = group / 2; o > 0; o >>= 1) {  // lane t += lane t + o: the CPU's tree
      const gradnorm::Sums<A> other{__shfl_down_sync(cuda::kFullMask, s.z, o, group),
                                    __shfl_down_sync(cuda::kFullMask, s.other, o, group),
                                    __shfl_down_sync(cuda::kFullMask, s.other_sq, o, group)};
      gradnorm::merge(s, other);
    }
    if (active && lane == 0) scores[r] = gradnorm::score(s);
  }
}

constexpr int kChunk = 256;  // rows staged in shared memory per step of the group walk

template <typename A, typename L>
__global__ void __launch_bounds__(kChunk) group_sums_kernel(const A* scores, const L* group_of, int64_t rows,
                                                            int64_t num_groups, int64_t high, A* sum_sq,
                                                            int64_t* count) {
  __shared__ A square[kChunk];
  __shared__ int64_t id[kChunk];
  for (int64_t first = blockIdx.x * static_cast<int64_t>(kChunk); first < num_groups;
       first += static_cast<int64_t>(gridDim.x) * kChunk) {  // block-uniform
    const int64_t k = first + threadIdx.x;
    A acc = A(0);
    int64_t c = 0;
    for (int64_t base = 0; base < rows; base += kChunk) {
      const int64_t r = base + threadIdx.x;
      if (r < rows) {
        const int64_t g = static_cast<int64_t>(group_of[r]);
        CUDA_KERNEL_ASSERT(g >= 0 && g < high && "gradnorm_scores: groups (or labels) must be in [0, num_groups)");
        square[threadIdx.x] = mul_rn(scores[r], scores[r]);
        id[threadIdx.x] = g;
      }
      __syncthreads();
      const int m = rows - base < kChunk ? static_cast<int>(rows - base) : kChunk;
      for (int t = 0; t < m; ++t) {
        if (id[t] == k) {
          acc = add_rn(acc, square[t]);
          ++c;
        }
      }
      __syncthreads();
    }
    if (k < num_groups) {
      sum_sq[k] = acc;
      count[k] = c;
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gradnorm_scores_cuda(const at::Tensor& logits, const at::Tensor& labels,
                                                                    const std::optional<at::Tensor>& groups,
                                                                    int64_t num_groups) {
  checks::gradnorm_scores(logits, labels, groups, num_groups);
  TORCH_CHECK(logits.is_cuda(), "gradnorm_scores: logits must be a CUDA tensor, got ", logits.device());
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const at::Tensor z = logits.contiguous();
  const at::Tensor y = labels.contiguous();
  const at::Tensor g = groups.has_value() ? groups->contiguous() : y;
  const int64_t rows = z.size(0), classes = z.size(1);
  const at::ScalarType acc = z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor scores = at::empty({rows}, z.options().dtype(acc));
  at::Tensor group_sum_sq = at::empty({num_groups}, z.options().dtype(acc));
  at::Tensor group_count = at::empty({num_groups}, z.options().dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "gradnorm_scores_cuda", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    A* sp = scores.mutable_data_ptr<A>();
    if (rows > 0) {
      AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "gradnorm_scores_cuda_labels", [&] {
        const int group = argmax::group_width(classes);
        scores_kernel<scalar_t, A, index_t><<<cuda::grid_size(rows * group), cuda::kThreads, 0, stream>>>(
            z.const_data_ptr<scalar_t>(), y.const_data_ptr<index_t>(), rows, classes, group, sp);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    AT_DISPATCH_INDEX_TYPES(g.scalar_type(), "gradnorm_scores_cuda_groups", [&] {
      const int blocks = static_cast<int>(std::min<int64_t>(cuda::ceil_div(num_groups, kChunk), 65535));
      group_sums_kernel<A, index_t><<<blocks, kChunk, 0, stream>>>(sp, g.const_data_ptr<index_t>(), rows, num_groups,
                                                                    num_groups, group_sum_sq.mutable_data_ptr<A>(),
                                                                    group_count.mutable_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {scores, group_sum_sq, group_count};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("gradnorm_scores", &gradnorm_scores_cuda);
}

}  // namespace dsampling
