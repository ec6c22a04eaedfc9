// centroid_distances on CUDA, a strict twin of the CPU kernel (common/prototypes.h):
//   1. the rows in class order, each class's range, count and chunks (cuda/group_rows.cuh);
//   2. a block per chunk adds its rows in order, one thread per dimension (pass 1 over the
//      embeddings); a thread per (class, dimension) adds the class's chunk sums in order and
//      divides by the count;
//   3. a warp per row adds (x_j - c_j)^2 in the lane/tree order (pass 2).
// Every sum runs in the CPU's order, so the results are the CPU's to the bit. No host sync: the
// chunk buffer is sized by an upper bound (N / kChunkRows + min(K, N) chunks of D accumulators)
// and blocks past the real number of chunks return. Out-of-range labels trip a device assertion;
// non-finite embeddings give NaN/Inf centroids and distances (the CPU twin raises).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/group_sums.h"
#include "common/prototypes.h"
#include "common/rounding.h"
#include "cuda/group_rows.cuh"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

using group_sums::kChunkRows;
using prototypes::kDistanceLanes;

// A block per chunk: its rows' ids go to shared memory, then thread t adds dimension t (t +
// blockDim, ...) over the rows in order. Blocks loop over chunks; past the real total they stop.
template <typename T, typename A>
__global__ void chunk_sums_kernel(const T* __restrict__ x, int64_t d, const int64_t* __restrict__ sorted_rows,
                                  const int64_t* class_start, const int64_t* counts, const int64_t* chunk_start,
                                  int64_t classes, A* __restrict__ partial) {
  __shared__ int64_t rows[kChunkRows];
  const int64_t total = chunk_start[classes];
  for (int64_t q = blockIdx.x; q < total; q += gridDim.x) {
    const cuda::Chunk chunk = cuda::chunk_at(class_start, counts, chunk_start, classes, q);
    const int64_t m = chunk.rows;
    for (int64_t r = threadIdx.x; r < m; r += blockDim.x) rows[r] = sorted_rows[chunk.first + r];
    __syncthreads();
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      A s = A(0);
#pragma unroll 8
      for (int64_t r = 0; r < m; ++r) s = add_rn(s, static_cast<A>(x[rows[r] * d + j]));
      partial[q * d + j] = s;
    }
    __syncthreads();
  }
}

// A thread per (class, dimension): the class's chunk sums in chunk order, then the mean.
template <typename A>
__global__ void means_kernel(const A* __restrict__ partial, const int64_t* counts, const int64_t* chunk_start,
                             int64_t classes, int64_t d, A* __restrict__ centroids) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < classes * d;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = e / d, j = e - c * d;
    A s = A(0);
    for (int64_t q = chunk_start[c]; q < chunk_start[c + 1]; ++q) s = add_rn(s, partial[q * d + j]);
    centroids[e] = prototypes::class_mean(s, counts[c]);
  }
}

// A warp per row: lane t adds dimensions t, t + 32, ...; then the tree over the lanes by shuffles
// (lane t += lane t + s), as row_distance does on the CPU.
template <typename T, typename L, typename A>
__global__ void distances_kernel(const T* __restrict__ x, const L* __restrict__ labels, int64_t n, int64_t d,
                                 const A* __restrict__ centroids, A* __restrict__ distances) {
  static_assert(kDistanceLanes == cuda::kWarp, "a warp per row");
  const int lane = threadIdx.x % cuda::kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / cuda::kWarp;
  for (int64_t i = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / cuda::kWarp; i < n; i += warps) {
    const T* row = x + i * d;
    const A* centroid = centroids + static_cast<int64_t>(labels[i]) * d;
    A s = A(0);
    for (int64_t j = lane; j < d; j += cuda::kWarp) {
      s = add_rn(s, prototypes::squared_difference(static_cast<A>(row[j]), centroid[j]));
    }
    for (int o = kDistanceLanes / 2; o > 0; o >>= 1) s = add_rn(s, __shfl_down_sync(cuda::kFullMask, s, o));
    if (lane == 0) distances[i] = s;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> centroid_distances_cuda(const at::Tensor& embeddings,
                                                                       const at::Tensor& labels, int64_t num_classes) {
  checks::centroid_distances(embeddings, labels, num_classes);
  TORCH_CHECK(embeddings.is_cuda(), "centroid_distances: embeddings must be a CUDA tensor, got ", embeddings.device());
  const c10::cuda::OptionalCUDAGuard guard(embeddings.device());
  const at::Tensor x = embeddings.contiguous();
  const at::Tensor y = labels.contiguous();
  const int64_t n = x.size(0), d = x.size(1), classes = num_classes;
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::TensorOptions longs = x.options().dtype(at::kLong);
  at::Tensor centroids = at::zeros({classes, d}, x.options().dtype(acc));
  at::Tensor distances = at::empty({n}, x.options().dtype(acc));
  at::Tensor counts = at::zeros({classes}, longs);
  if (n == 0) return {centroids, distances, counts};  // every class is empty: centroids 0
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  // 1. Rows in class order (stable), class ranges, counts and chunk numbering.
  const cuda::GroupedRows grouped = cuda::group_rows(y, classes, counts, stream);
  const at::Tensor& sorted_rows = grouped.sorted_rows;
  const at::Tensor& class_start = grouped.group_start;
  const at::Tensor& chunk_start = grouped.chunk_start;

  // 2. Chunk sums and class means; 3. squared distances.
  const int64_t max_chunks = group_sums::max_chunks(n, classes);
  const int sum_threads = static_cast<int>(std::min<int64_t>(cuda::kThreads, cuda::ceil_div(d, cuda::kWarp) * cuda::kWarp));
  const int sum_blocks = static_cast<int>(std::min<int64_t>(max_chunks, static_cast<int64_t>(
      std::max(cuda::current_device_limits().sms, 1)) * (2048 / sum_threads)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "centroid_distances_cuda", [&] {
    using A = typename Wider<scalar_t>::type;
    at::Tensor partial = at::empty({max_chunks, d}, x.options().dtype(acc));
    chunk_sums_kernel<scalar_t, A><<<sum_blocks, sum_threads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), d, sorted_rows.const_data_ptr<int64_t>(), class_start.const_data_ptr<int64_t>(),
        counts.const_data_ptr<int64_t>(), chunk_start.const_data_ptr<int64_t>(), classes,
        partial.mutable_data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    means_kernel<A><<<cuda::grid_size(classes * d), cuda::kThreads, 0, stream>>>(
        partial.const_data_ptr<A>(), counts.const_data_ptr<int64_t>(), chunk_start.const_data_ptr<int64_t>(), classes,
        d, centroids.mutable_data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "centroid_distances_cuda_labels", [&] {
      distances_kernel<scalar_t, index_t, A><<<cuda::grid_size(n * cuda::kWarp), cuda::kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), y.const_data_ptr<index_t>(), n, d, centroids.const_data_ptr<A>(),
          distances.mutable_data_ptr<A>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {centroids, distances, counts};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("centroid_distances", &centroid_distances_cuda);
}

}  // namespace dsampling
