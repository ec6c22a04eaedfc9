// table_select on CUDA, a strict twin of the CPU kernel (common/table.h):
//   mean:       a block per tile sums it in the lane/tree order, one block sums the tiles;
//   pmf:        cub compacts the scored values, the loss_histogram op bins them;
//   percentile: cub compacts them, at::sort orders them, each index binary-searches its rank;
//   then one decision pass (a thread per Philox block of 4 indices) writes a keep code per
//   index, cub counts and compacts the kept indices in order, and a last pass writes weights.
// Host syncs (documented in ops.table_select): the kept count, to size the outputs, and for pmf
// and percentile the number of scored entries. Scores must be finite where scored (the CPU twin
// raises; here a NaN compares false everywhere, except under pmf: the histogram of scored values
// whose edges repeat, NaN ones included, comes back with NaN edges, read with the kept count, and
// raises as the CPU twin's loss_histogram does).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/device/device_reduce.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include "common/binning.h"
#include "common/checks.h"
#include "common/philox.h"
#include "common/selection.h"
#include "common/table.h"
#include "cuda/lane_sum.cuh"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

using selection::kLanes;

__device__ unsigned long long block_count(unsigned long long mine, unsigned long long* slot) {
  if (threadIdx.x == 0) *slot = 0;
  __syncthreads();
  atomicAdd(slot, mine);  // integers: the order does not matter
  __syncthreads();
  const unsigned long long total = *slot;
  __syncthreads();
  return total;
}

// Tile t's sum of scored values (lane l adds values l, l + kLanes, ... of the tile) and count.
template <typename S>
__global__ void __launch_bounds__(kLanes) tile_sums_kernel(const S* scores, const int32_t* seen, int64_t n,
                                                            int64_t tiles, double* tile_sum, int64_t* tile_count) {
  __shared__ double partial[kLanes];
  __shared__ unsigned long long counted;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t base = t * table::kTile;
    double s = 0.0;
    unsigned long long c = 0;
    for (int64_t j = base + threadIdx.x; j < base + table::kTile && j < n; j += kLanes) {
      const bool scored = seen[j] >= 0;
      s = add_rn(s, scored ? static_cast<double>(scores[j]) : 0.0);
      c += scored;
    }
    const double total = cuda::lane_tree_sum(s, partial);
    const unsigned long long count = block_count(c, &counted);
    if (threadIdx.x == 0) {
      tile_sum[t] = total;
      tile_count[t] = static_cast<int64_t>(count);
    }
  }
}

// One block: the tile sums in the lane/tree order, then mean = sum / count (NaN when none).
__global__ void __launch_bounds__(kLanes) mean_kernel(const double* tile_sum, const int64_t* tile_count,
                                                      int64_t tiles, double* mean) {
  __shared__ double partial[kLanes];
  __shared__ unsigned long long counted;
  double s = 0.0;
  unsigned long long c = 0;
  for (int64_t t = threadIdx.x; t < tiles; t += kLanes) {
    s = add_rn(s, tile_sum[t]);
    c += static_cast<unsigned long long>(tile_count[t]);
  }
  const double total = cuda::lane_tree_sum(s, partial);
  const unsigned long long count = block_count(c, &counted);
  if (threadIdx.x == 0) *mean = count > 0 ? div_rn(total, static_cast<double>(count)) : NAN;
}

template <typename S>
struct MeanChance {
  const S* scores;
  const double* mean;
  double q;
  __device__ table::Chance operator()(int64_t i) const { return {static_cast<double>(scores[i]) < *mean, q}; }
};

template <typename S>
struct PmfChance {
  const S* scores;
  const double* edges;
  const int64_t* counts;
  int32_t k;
  int64_t scored;
  double threshold, q;
  __device__ table::Chance operator()(int64_t i) const {
    const double* e = edges;
    const auto edge = [e](int32_t j) { return e[j]; };
    const int32_t b = binning::bin_index<double, double>(static_cast<double>(scores[i]), edge, k, sub_rn(e[k], e[0]));
    return {b >= 0 && div_rn(static_cast<double>(counts[b]), static_cast<double>(scored)) > threshold, q};
  }
};

template <typename S>
struct PercentileChance {
  const S* scores;
  const double* sorted;
  int64_t scored;
  double beta;
  __device__ table::Chance operator()(int64_t i) const {
    const double v = static_cast<double>(scores[i]);
    int64_t lo = 0, hi = scored;  // left = #(sorted < v)
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] < v) lo = mid + 1; else hi = mid;
    }
    const int64_t left = lo;
    hi = scored;  // right = #(sorted <= v)
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] <= v) lo = mid + 1; else hi = mid;
    }
    return {true, selection::power(selection::percentile(left, lo, scored), beta)};
  }
};

struct MismatchChance {
  const int8_t* right;
  double q;
  __device__ table::Chance operator()(int64_t i) const { return {right[i] > 0, q}; }
};

template <typename ChanceFn>
__global__ void decide_kernel(int64_t n, const int32_t* seen, int64_t epoch, int64_t staleness, int64_t seed,
                              int64_t offset, ChanceFn chance, uint8_t* code) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const philox::Block block = philox::stream_block(seed, offset, static_cast<uint64_t>(b));
    for (int w = 0; w < 4 && 4 * b + w < n; ++w) {
      const int64_t i = 4 * b + w;
      const bool is_forced = table::forced(seen[i], epoch, staleness);
      code[i] = is_forced ? table::kKept : table::keep_code(false, chance(i), philox::to_uniform(block.v[w]));
    }
  }
}

__global__ void weights_kernel(const int64_t* kept, const uint8_t* code, int64_t m, float candidate_weight,
                               float* weights) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < m;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    weights[j] = code[kept[j]] == table::kKeptCandidate ? candidate_weight : 1.0f;
  }
}

struct IsScored {
  __device__ bool operator()(int32_t seen) const { return seen >= 0; }
};

template <typename S>
struct ToDouble {
  __device__ double operator()(S v) const { return static_cast<double>(v); }
};

struct NonZero {
  __device__ int64_t operator()(uint8_t c) const { return c != 0; }
};

// The scored values in index order, as float64 (reads their number back: a host sync).
template <typename S>
at::Tensor scored_values(const S* scores, const int32_t* seen, int64_t n, const at::TensorOptions& options,
                         cudaStream_t stream) {
  at::Tensor values = at::empty({n}, options.dtype(at::kDouble));
  at::Tensor num = at::empty({}, options.dtype(at::kLong));
  const auto in = thrust::make_transform_iterator(scores, ToDouble<S>());
  const auto flags = thrust::make_transform_iterator(seen, IsScored());
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, in, flags, values.mutable_data_ptr<double>(),
                                            num.mutable_data_ptr<int64_t>(), n, stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.mutable_data_ptr(), bytes, in, flags,
                                            values.mutable_data_ptr<double>(), num.mutable_data_ptr<int64_t>(), n,
                                            stream));
  return values.narrow(0, 0, num.item<int64_t>());
}

using HistogramFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, std::optional<at::ArrayRef<double>>);

std::tuple<at::Tensor, at::Tensor> table_select_cuda(const at::Tensor& scores, const at::Tensor& seen_epoch,
                                                     int64_t epoch, int64_t rule, double prune, int64_t staleness,
                                                     int64_t bin_rule, int64_t bins, double threshold, double beta,
                                                     bool reweight, int64_t seed, int64_t offset) {
  checks::table_select(scores, seen_epoch, epoch, rule, prune, staleness, bin_rule, bins, threshold, beta, reweight);
  TORCH_CHECK(scores.is_cuda(), "table_select: scores must be a CUDA tensor, got ", scores.device());
  const c10::cuda::OptionalCUDAGuard guard(scores.device());
  const int64_t n = scores.numel();
  const at::TensorOptions options = scores.options();
  if (n == 0) return {at::empty({0}, options.dtype(at::kLong)), at::empty({0}, options.dtype(at::kFloat))};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int32_t* seen = seen_epoch.const_data_ptr<int32_t>();
  at::Tensor code = at::empty({n}, options.dtype(at::kByte));
  uint8_t* c = code.mutable_data_ptr<uint8_t>();
  const double q = 1.0 - prune;
  const int grid = cuda::grid_size((n + 3) / 4);
  const auto decide = [&](auto chance) {
    decide_kernel<<<grid, cuda::kThreads, 0, stream>>>(n, seen, epoch, staleness, seed, offset, chance, c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };

  at::Tensor edges_repeat;  // pmf: whether loss_histogram gave NaN edges (its in-band error)
  if (rule == table::kMismatch) {
    decide(MismatchChance{scores.const_data_ptr<int8_t>(), q});
  } else {
    AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "table_select_cuda", [&] {
      const scalar_t* s = scores.const_data_ptr<scalar_t>();
      if (rule == table::kMean) {
        const int64_t tiles = (n + table::kTile - 1) / table::kTile;
        at::Tensor tile_sum = at::empty({tiles}, options.dtype(at::kDouble));
        at::Tensor tile_count = at::empty({tiles}, options.dtype(at::kLong));
        at::Tensor mean = at::empty({}, options.dtype(at::kDouble));
        tile_sums_kernel<<<static_cast<int>(std::min<int64_t>(tiles, 65535)), kLanes, 0, stream>>>(
            s, seen, n, tiles, tile_sum.mutable_data_ptr<double>(), tile_count.mutable_data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        mean_kernel<<<1, kLanes, 0, stream>>>(tile_sum.const_data_ptr<double>(), tile_count.const_data_ptr<int64_t>(),
                                              tiles, mean.mutable_data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        decide(MeanChance<scalar_t>{s, mean.const_data_ptr<double>(), q});
      } else {
        const at::Tensor values = scored_values(s, seen, n, options, stream);
        const int64_t scored = values.numel();
        if (rule == table::kPmf) {
          // With nothing scored every index is forced and the chance is never asked.
          const int64_t k = scored > 0 ? binning::bin_count(bin_rule, scored, bins) : 1;
          static const auto histogram = c10::Dispatcher::singleton()
                                            .findSchemaOrThrow("dsampling::loss_histogram", "")
                                            .typed<HistogramFn>();
          at::Tensor counts, edges;
          if (scored > 0) {
            std::tie(counts, edges) = histogram.call(values, k, std::nullopt);
          } else {
            counts = at::zeros({k}, options.dtype(at::kLong));
            edges = at::zeros({k + 1}, options.dtype(at::kDouble));
          }
          edges_repeat = edges.narrow(0, 0, 1).isnan().to(at::kLong);
          decide(PmfChance<scalar_t>{s, edges.const_data_ptr<double>(), counts.const_data_ptr<int64_t>(),
                                     static_cast<int32_t>(k), scored, threshold, q});
        } else {
          const at::Tensor sorted = std::get<0>(at::sort(values));
          decide(PercentileChance<scalar_t>{s, sorted.const_data_ptr<double>(), scored, beta});
        }
      }
    });
  }

  // The kept count sizes the outputs (a host sync), then the ordered compaction.
  const auto nonzero = thrust::make_transform_iterator(static_cast<const uint8_t*>(c), NonZero());
  at::Tensor kept_count = at::empty({}, options.dtype(at::kLong));
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes, nonzero, kept_count.mutable_data_ptr<int64_t>(), n, stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceReduce::Sum(temp.mutable_data_ptr(), bytes, nonzero, kept_count.mutable_data_ptr<int64_t>(),
                                        n, stream));
  int64_t m;
  if (edges_repeat.defined()) {  // one read for both
    const at::Tensor read = at::cat({kept_count.reshape({1}), edges_repeat}).cpu();
    m = read.const_data_ptr<int64_t>()[0];
    TORCH_CHECK(read.const_data_ptr<int64_t>()[1] == 0, "loss_histogram: bins must leave every bin a finite width ",
                "(edges repeat in this dtype): table_select's pmf rule got scores that are all equal and too large ",
                "for the +-0.5 widening (float64 >= 2**53), or NaN/Inf scores");
  } else {
    m = kept_count.item<int64_t>();
  }
  at::Tensor indices = at::empty({m}, options.dtype(at::kLong));
  at::Tensor weights = at::empty({m}, options.dtype(at::kFloat));
  if (m == 0) return {indices, weights};
  const thrust::counting_iterator<int64_t> positions(0);
  bytes = 0;
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, positions, c, indices.mutable_data_ptr<int64_t>(),
                                            kept_count.mutable_data_ptr<int64_t>(), n, stream));
  temp = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.mutable_data_ptr(), bytes, positions, c,
                                            indices.mutable_data_ptr<int64_t>(),
                                            kept_count.mutable_data_ptr<int64_t>(), n, stream));
  const float candidate_weight = reweight ? static_cast<float>(1.0 / q) : 1.0f;
  weights_kernel<<<cuda::grid_size(m), cuda::kThreads, 0, stream>>>(indices.const_data_ptr<int64_t>(), c, m,
                                                                     candidate_weight,
                                                                     weights.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {indices, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("table_select", &table_select_cuda);
}

}  // namespace dsampling
