// The rows of a batch put in group order on the GPU (CUDA only), for the chunked sums of
// common/group_sums.h (centroid_distances, gradnorm_scores): cub's stable radix sort of
// (group, row) lists each group's rows in increasing row order, a boundary pass finds each
// group's range and count, and a scan numbers the chunks. No host sync: buffers that depend on
// the number of chunks are sized by group_sums::max_chunks, and kernels stop at chunk_start[groups].
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "common/group_sums.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace cuda {
namespace {  // each kernel file gets its own copy of these kernels

// The sort keys: the group ids as int32, checked.
template <typename L>
__global__ void group_keys_kernel(const L* group_of, int64_t n, int64_t groups, int32_t* keys) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = static_cast<int64_t>(group_of[i]);
    CUDA_KERNEL_ASSERT(k >= 0 && k < groups &&
                       "labels (centroid_distances) or groups (gradnorm_scores) must be in [0, the number of groups)");
    keys[i] = static_cast<int32_t>(k);
  }
}

// Each group's [start, end), from where the sorted keys change. Empty groups keep their zeros.
__global__ void group_bounds_kernel(const int32_t* sorted, int64_t n, int64_t* start, int64_t* end) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t k = sorted[i];
    if (i == 0 || sorted[i - 1] != k) start[k] = i;
    if (i == n - 1 || sorted[i + 1] != k) end[k] = i + 1;
  }
}

// counts[k] and each group's chunks (chunks[groups] = 0, so that an exclusive scan over
// groups + 1 entries ends with the total).
__global__ void group_chunks_kernel(const int64_t* start, const int64_t* end, int64_t groups, int64_t* counts,
                                    int64_t* chunks) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k <= groups;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (k == groups) {
      chunks[k] = 0;
    } else {
      counts[k] = end[k] - start[k];
      chunks[k] = group_sums::chunks_of(counts[k]);
    }
  }
}

}  // namespace

// The group owning chunk q: the last k with chunk_start[k] <= q (empty groups share their
// successor's start, so the last one is the owner).
__device__ inline int64_t chunk_owner(const int64_t* chunk_start, int64_t groups, int64_t q) {
  int64_t lo = 0, hi = groups + 1;  // upper_bound over chunk_start[0, groups]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (chunk_start[mid] <= q) lo = mid + 1; else hi = mid;
  }
  return lo - 1;
}

// A chunk's rows: sorted_rows[first, first + rows).
struct Chunk {
  int64_t group, first, rows;
};

__device__ inline Chunk chunk_at(const int64_t* group_start, const int64_t* counts, const int64_t* chunk_start,
                                 int64_t groups, int64_t q) {
  const int64_t k = chunk_owner(chunk_start, groups, q);
  const int64_t offset = (q - chunk_start[k]) * group_sums::kChunkRows;
  return {k, group_start[k] + offset, min(group_sums::kChunkRows, counts[k] - offset)};
}

struct GroupedRows {
  at::Tensor sorted_rows;  // int64 [n]: the rows in group order, increasing within a group
  at::Tensor group_start;  // int64 [groups]: where each group's rows begin in sorted_rows
  at::Tensor chunk_start;  // int64 [groups + 1]: each group's first chunk; [groups] is the total
};

// group_of: int64 or int32 [n], contiguous, ids in [0, groups) (else a device assertion);
// counts: int64 [groups], zeros, receives each group's row count.
inline GroupedRows group_rows(const at::Tensor& group_of, int64_t groups, at::Tensor& counts, cudaStream_t stream) {
  const int64_t n = group_of.numel();
  const at::TensorOptions longs = group_of.options().dtype(at::kLong);
  at::Tensor keys = at::empty({n}, group_of.options().dtype(at::kInt));
  AT_DISPATCH_INDEX_TYPES(group_of.scalar_type(), "group_rows_keys", [&] {
    group_keys_kernel<index_t><<<grid_size(n), kThreads, 0, stream>>>(group_of.const_data_ptr<index_t>(), n, groups,
                                                                      keys.mutable_data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor rows = at::arange(n, longs);
  at::Tensor sorted_keys = at::empty({n}, keys.options());
  at::Tensor sorted_rows = at::empty({n}, longs);
  int end_bit = 1;
  while (end_bit < 31 && (int64_t{1} << end_bit) < groups) ++end_bit;
  size_t sort_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys.const_data_ptr<int32_t>(),
                                                 sorted_keys.mutable_data_ptr<int32_t>(),
                                                 rows.const_data_ptr<int64_t>(), sorted_rows.mutable_data_ptr<int64_t>(),
                                                 n, 0, end_bit, stream));
  at::Tensor sort_temp = at::empty({static_cast<int64_t>(sort_bytes)}, keys.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp.mutable_data_ptr(), sort_bytes,
                                                 keys.const_data_ptr<int32_t>(), sorted_keys.mutable_data_ptr<int32_t>(),
                                                 rows.const_data_ptr<int64_t>(), sorted_rows.mutable_data_ptr<int64_t>(),
                                                 n, 0, end_bit, stream));
  at::Tensor group_start = at::zeros({groups}, longs);
  at::Tensor group_end = at::zeros({groups}, longs);
  group_bounds_kernel<<<grid_size(n), kThreads, 0, stream>>>(sorted_keys.const_data_ptr<int32_t>(), n,
                                                             group_start.mutable_data_ptr<int64_t>(),
                                                             group_end.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor chunks = at::empty({groups + 1}, longs);
  at::Tensor chunk_start = at::empty({groups + 1}, longs);
  group_chunks_kernel<<<grid_size(groups + 1), kThreads, 0, stream>>>(
      group_start.const_data_ptr<int64_t>(), group_end.const_data_ptr<int64_t>(), groups,
      counts.mutable_data_ptr<int64_t>(), chunks.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  size_t scan_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, chunks.const_data_ptr<int64_t>(),
                                               chunk_start.mutable_data_ptr<int64_t>(), groups + 1, stream));
  at::Tensor scan_temp = at::empty({static_cast<int64_t>(scan_bytes)}, keys.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_temp.mutable_data_ptr(), scan_bytes,
                                               chunks.const_data_ptr<int64_t>(),
                                               chunk_start.mutable_data_ptr<int64_t>(), groups + 1, stream));
  return {sorted_rows, group_start, chunk_start};
}

}  // namespace cuda
}  // namespace dsampling
