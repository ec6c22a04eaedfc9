// loss_histogram on CUDA: a min/max pass writing per-block partials; an edges kernel over a grid
// (each block reduces the partials itself, then writes its share of the numpy edges); a counting
// pass with a shared-memory histogram per block (opting in to the large shared-memory carve-out
// above 48 KB; global atomics only when even that is too small), where the lanes of a warp that
// fall in the same bin add once (losses pile into a few bins). No host sync: data-dependent
// errors (NaN/Inf without a range, edges that repeat) cannot be raised here, so they give NaN
// edges and zero counts (the edges kernel flags repeating edges, the counting pass then writes NaN
// edges instead of counting). With a range the edges depend on the range alone, so repeating edges
// are raised on the host, as the CPU does, and NaN/Inf values fall outside it, uncounted as in
// numpy. Counts are integers, so the atomics are deterministic.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>
#include <limits>

#include "common/binning.h"
#include "common/checks.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

constexpr int kMaxPartials = 1024;

// Shared-memory layout of count_kernel: k + 1 edges, padded to 8 bytes, then k counters.
template <typename T>
__host__ __device__ inline size_t counts_offset(int64_t k) {
  return cuda::ceil_div((k + 1) * sizeof(T), 8) * 8;
}

template <typename W>
struct MinMax {
  W lo, hi;
};

template <typename W>
__device__ MinMax<W> block_min_max(W lo, W hi) {
  using Reduce = cub::BlockReduce<W, cuda::kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ W result[2];
  const W block_lo = Reduce(storage).Reduce(lo, [](W a, W b) { return b < a ? b : a; });
  __syncthreads();
  const W block_hi = Reduce(storage).Reduce(hi, [](W a, W b) { return b > a ? b : a; });
  if (threadIdx.x == 0) {
    result[0] = block_lo;
    result[1] = block_hi;
  }
  __syncthreads();
  return {result[0], result[1]};
}

// Per-block min and max; a block that saw NaN or Inf writes NaN. Block 0 also clears the flag
// that the edges kernel sets.
template <typename T, typename W>
__global__ void min_max_partial_kernel(const T* x, int64_t n, W* partial_lo, W* partial_hi, int* repeat) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *repeat = 0;
  W lo = std::numeric_limits<W>::infinity(), hi = -lo;
  int bad = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const W v = static_cast<W>(x[i]);
    bad |= !isfinite(v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  const MinMax<W> mm = block_min_max(lo, hi);
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) {
    partial_lo[blockIdx.x] = bad ? W(NAN) : mm.lo;
    partial_hi[blockIdx.x] = bad ? W(NAN) : mm.hi;
  }
}

// Outer edges from the partials (or the given range), then the k + 1 edges over a grid: each
// block reduces the (at most kMaxPartials) partials itself. Without a range, a thread whose bin
// has no width (binning::bin_has_width: numpy's "Too many bins") sets *repeat.
template <typename T, typename S, typename W>
__global__ void edges_kernel(const W* partial_lo, const W* partial_hi, int num_partials,
                             bool has_range, double range_lo, double range_hi, int64_t k, T* edges, int* repeat) {
  S first, last;
  if (has_range) {
    first = S(range_lo);
    last = S(range_hi);
  } else {
    W lo = std::numeric_limits<W>::infinity(), hi = -lo;
    int bad = 0;
    for (int p = threadIdx.x; p < num_partials; p += blockDim.x) {
      bad |= isnan(partial_lo[p]);
      lo = partial_lo[p] < lo ? partial_lo[p] : lo;
      hi = partial_hi[p] > hi ? partial_hi[p] : hi;
    }
    const MinMax<W> mm = block_min_max(lo, hi);
    bad = __syncthreads_or(bad);
    first = bad ? S(NAN) : S(T(mm.lo));
    last = bad ? S(NAN) : S(T(mm.hi));
  }
  const binning::OuterEdges<S> outer = binning::outer_edges<S>(first, last);
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j <= k;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    edges[j] = T(binning::linspace_edge<S>(j, k, outer.first, outer.last));
    if (!has_range && j < k && !binning::bin_has_width<T, S>(j, k, outer)) *repeat = 1;
  }
}

// Counts v into its bin; when the edges repeat (*repeat, never with a range) block 0 writes NaN
// edges instead and nothing is counted (no block reads the edges then).
template <typename T, typename S>
__global__ void count_kernel(const T* x, int64_t n, T* edges, int64_t k, bool has_range,
                             S range_denom, const int* repeat, bool use_shared, unsigned long long* counts) {
  if (!has_range && *repeat) {
    if (blockIdx.x == 0) {
      for (int64_t j = threadIdx.x; j <= k; j += blockDim.x) edges[j] = T(NAN);
    }
    return;
  }
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_edges = reinterpret_cast<T*>(smem);
  unsigned int* s_counts = reinterpret_cast<unsigned int*>(smem + counts_offset<T>(k));
  if (use_shared) {
    for (int64_t j = threadIdx.x; j <= k; j += blockDim.x) s_edges[j] = edges[j];
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) s_counts[j] = 0;
    __syncthreads();
  }
  const T* e = use_shared ? s_edges : edges;
  const auto edge = [e](int32_t j) { return e[j]; };
  const S denom = has_range ? range_denom : S(Rounded<T>::sub(e[k], e[0]));
  const int lane = threadIdx.x % cuda::kWarp;
  // Warp-uniform loop, so that every lane takes part in __match_any_sync; -1: no bin.
  for (int64_t base = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x - lane; base < n;
       base += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = base + lane;
    const int32_t b = i < n ? binning::bin_index<T, S>(x[i], edge, static_cast<int32_t>(k), denom) : -1;
    const unsigned peers = __match_any_sync(cuda::kFullMask, b);
    if (b < 0 || lane != __ffs(peers) - 1) continue;  // the lowest lane of a bin adds for all of them
    if (use_shared) {
      atomicAdd(&s_counts[b], static_cast<unsigned int>(__popc(peers)));
    } else {
      atomicAdd(&counts[b], static_cast<unsigned long long>(__popc(peers)));
    }
  }
  if (use_shared) {
    __syncthreads();
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      if (s_counts[j] != 0) atomicAdd(&counts[j], static_cast<unsigned long long>(s_counts[j]));
    }
  }
}

std::tuple<at::Tensor, at::Tensor> loss_histogram_cuda(const at::Tensor& values, int64_t bins,
                                                       std::optional<at::ArrayRef<double>> range) {
  checks::loss_histogram(values, bins, range);
  TORCH_CHECK(values.is_cuda(), "loss_histogram: values must be a CUDA tensor, got ", values.device());
  const c10::cuda::OptionalCUDAGuard guard(values.device());
  const at::Tensor x = values.contiguous();
  const int64_t n = x.numel();
  at::Tensor counts = at::zeros({bins}, x.options().dtype(at::kLong));
  at::Tensor edges = at::empty({bins + 1}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int grid = cuda::grid_size(n);
  const int edges_grid = cuda::grid_size(bins + 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "loss_histogram_cuda", [&] {
    using W = typename Wider<scalar_t>::type;
    const scalar_t* data = x.const_data_ptr<scalar_t>();
    scalar_t* e = edges.mutable_data_ptr<scalar_t>();
    auto* c = reinterpret_cast<unsigned long long*>(counts.mutable_data_ptr<int64_t>());
    const size_t shared = counts_offset<scalar_t>(bins) + bins * sizeof(unsigned int);
    if (range.has_value()) {
      const binning::OuterEdges<double> outer = binning::outer_edges<double>((*range)[0], (*range)[1]);
      bool increasing = true;  // on the host: the edges depend on the range alone (O(bins), no sync)
      for (int64_t j = 0; j < bins; ++j) increasing &= binning::bin_has_width<scalar_t, double>(j, bins, outer);
      checks::loss_histogram_edges(increasing, bins, static_cast<double>(scalar_t(outer.first)),
                                   static_cast<double>(scalar_t(outer.last)));
      edges_kernel<scalar_t, double, W><<<edges_grid, cuda::kThreads, 0, stream>>>(
          nullptr, nullptr, 0, true, (*range)[0], (*range)[1], bins, e, nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const bool use_shared = cuda::reserve_dynamic_shared(count_kernel<scalar_t, double>, shared);
      count_kernel<scalar_t, double><<<grid, cuda::kThreads, use_shared ? shared : 0, stream>>>(
          data, n, e, bins, true, Rounded<double>::sub(outer.last, outer.first), nullptr, use_shared, c);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      const int parts = std::min(grid, kMaxPartials);
      at::Tensor partial = at::empty({2, parts}, x.options().dtype(c10::CppTypeToScalarType<W>::value));
      at::Tensor repeat = at::empty({1}, x.options().dtype(at::kInt));  // cleared by min_max_partial_kernel
      W* lo = partial.mutable_data_ptr<W>();
      int* r = repeat.mutable_data_ptr<int>();
      min_max_partial_kernel<scalar_t, W><<<parts, cuda::kThreads, 0, stream>>>(data, n, lo, lo + parts, r);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      edges_kernel<scalar_t, scalar_t, W><<<edges_grid, cuda::kThreads, 0, stream>>>(
          lo, lo + parts, parts, false, 0.0, 0.0, bins, e, r);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const bool use_shared = cuda::reserve_dynamic_shared(count_kernel<scalar_t, scalar_t>, shared);
      count_kernel<scalar_t, scalar_t><<<grid, cuda::kThreads, use_shared ? shared : 0, stream>>>(
          data, n, e, bins, false, scalar_t(0), r, use_shared, c);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {counts, edges};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("loss_histogram", &loss_histogram_cuda);
}

}  // namespace dsampling
