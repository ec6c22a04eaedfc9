// gradnorm_scores on CUDA, a twin of the CPU kernel (common/gradnorm.h): each row gets
// G = argmax::group_width(C) lanes of a warp (as argmax_mismatch), lane t adding the terms
// j = t, t + G, ..., the lanes merged by the shuffle tree the CPU emulates. The group sums go
// without atomics, in the chunked order of common/group_sums.h, so that they are the CPU's to the
// bit: the rows are put in group order (cuda/group_rows.cuh), a thread adds each chunk of 256
// rows, then a thread per group adds its chunks (a batch all of one group: 256 + B / 256 serial
// adds, where a thread walking every row took B).
// No host sync; a label or group out of range trips a device assertion.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/argmax.h"
#include "common/checks.h"
#include "common/gradnorm.h"
#include "common/group_sums.h"
#include "cuda/group_rows.cuh"
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

// A thread per chunk: score^2 of its rows, in order from 0. Threads past the real total stop.
template <typename A>
__global__ void chunk_sums_kernel(const A* __restrict__ scores, const int64_t* __restrict__ sorted_rows,
                                  const int64_t* group_start, const int64_t* counts, const int64_t* chunk_start,
                                  int64_t num_groups, A* __restrict__ partial) {
  const int64_t total = chunk_start[num_groups];
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < total;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const cuda::Chunk chunk = cuda::chunk_at(group_start, counts, chunk_start, num_groups, q);
    A acc = A(0);
    for (int64_t r = 0; r < chunk.rows; ++r) {
      const A v = scores[sorted_rows[chunk.first + r]];
      acc = add_rn(acc, mul_rn(v, v));
    }
    partial[q] = acc;
  }
}

// A thread per group: its chunk sums in chunk order, from 0.
template <typename A>
__global__ void group_totals_kernel(const A* __restrict__ partial, const int64_t* chunk_start, int64_t num_groups,
                                    A* __restrict__ sum_sq) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < num_groups;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A acc = A(0);
    for (int64_t q = chunk_start[k]; q < chunk_start[k + 1]; ++q) acc = add_rn(acc, partial[q]);
    sum_sq[k] = acc;
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
  at::Tensor group_sum_sq = at::zeros({num_groups}, z.options().dtype(acc));
  at::Tensor group_count = at::zeros({num_groups}, z.options().dtype(at::kLong));
  if (rows == 0) return {scores, group_sum_sq, group_count};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cuda::GroupedRows grouped = cuda::group_rows(g, num_groups, group_count, stream);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "gradnorm_scores_cuda", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    A* sp = scores.mutable_data_ptr<A>();
    AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "gradnorm_scores_cuda_labels", [&] {
      const int group = argmax::group_width(classes);
      scores_kernel<scalar_t, A, index_t><<<cuda::grid_size(rows * group), cuda::kThreads, 0, stream>>>(
          z.const_data_ptr<scalar_t>(), y.const_data_ptr<index_t>(), rows, classes, group, sp);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    const int64_t max_chunks = group_sums::max_chunks(rows, num_groups);
    at::Tensor partial = at::empty({max_chunks}, z.options().dtype(acc));
    chunk_sums_kernel<A><<<cuda::grid_size(max_chunks), cuda::kThreads, 0, stream>>>(
        sp, grouped.sorted_rows.const_data_ptr<int64_t>(), grouped.group_start.const_data_ptr<int64_t>(),
        group_count.const_data_ptr<int64_t>(), grouped.chunk_start.const_data_ptr<int64_t>(), num_groups,
        partial.mutable_data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    group_totals_kernel<A><<<cuda::grid_size(num_groups), cuda::kThreads, 0, stream>>>(
        partial.const_data_ptr<A>(), grouped.chunk_start.const_data_ptr<int64_t>(), num_groups,
        group_sum_sq.mutable_data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {scores, group_sum_sq, group_count};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("gradnorm_scores", &gradnorm_scores_cuda);
}

}  // namespace dsampling
