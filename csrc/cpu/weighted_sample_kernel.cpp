// weighted_sample on the CPU: exact 64-bit fixed-point weights, tile sums and their prefix, a
// guide table, then one Philox draw per sample located by the guide, a short binary search over
// the tile prefixes and a scan of one tile (common/weighted.h). Extra memory: 8 bytes per tile of
// 32 weights and 8 per guide bucket (under 2 bytes per weight in all), so N = 10^8 float32
// weights need about 0.6 GB with themselves.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/weighted.h"
#include "cpu/uniforms.h"

namespace dsampling {
namespace {

constexpr int64_t kGrain = 1 << 16;
constexpr int kLanes = 8;
constexpr int64_t kBatch = 32;  // draws whose memory accesses are overlapped

// The largest weight, after checking that every weight is finite and >= 0 (the error names the
// first that is not, whichever thread found a bad one first). Lanes of independent maxima so
// that the loop vectorises.
template <typename T>
double checked_max(const T* w, int64_t n) {
  std::vector<double> chunk_max(std::max<int64_t>(1, at::divup(n, kGrain)), 0.0);
  std::vector<int64_t> first_bad(chunk_max.size(), -1);
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    double lane[kLanes] = {0.0};
    int bad = 0;
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const double v = static_cast<double>(w[i + l]);
        bad |= static_cast<int>(!(v >= 0.0)) | static_cast<int>(!(v - v == 0.0));  // NaN, < 0, Inf
        lane[l] = v > lane[l] ? v : lane[l];
      }
    }
    for (; i < end; ++i) {
      const double v = static_cast<double>(w[i]);
      bad |= static_cast<int>(!(v >= 0.0)) | static_cast<int>(!(v - v == 0.0));
      lane[0] = v > lane[0] ? v : lane[0];
    }
    for (int64_t j = begin; bad && j < end; ++j) {  // the chunk's first bad index
      const double v = static_cast<double>(w[j]);
      if (!(v >= 0.0 && std::isfinite(v))) {
        first_bad[begin / kGrain] = j;
        break;
      }
    }
    double m = 0.0;
    for (int l = 0; l < kLanes; ++l) m = lane[l] > m ? lane[l] : m;
    chunk_max[begin / kGrain] = m;
  });
  // Raised here, not in the chunks: the error names the first bad index of all, whichever
  // thread finished first.
  for (int64_t j : first_bad) {
    TORCH_CHECK(j < 0, "weighted_sample: weights must be finite and >= 0, got ", static_cast<double>(w[j]),
                " at index ", j);
  }
  return *std::max_element(chunk_max.begin(), chunk_max.end());
}

// sums[t] = sum of the fixed-point weights of tile t; returns their total (exact).
template <typename T>
uint64_t tile_sums(const T* w, int64_t n, int64_t tiles, weighted::Scale scale, uint64_t* sums) {
  std::vector<uint64_t> chunk_total(at::divup(tiles, kGrain / weighted::kTile), 0);
  at::parallel_for(0, tiles, kGrain / weighted::kTile, [&](int64_t begin, int64_t end) {
    uint64_t total = 0;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t first = t * weighted::kTile, last = std::min(n, first + weighted::kTile);
      uint64_t s = 0;
      for (int64_t i = first; i < last; ++i) s += weighted::fixed(static_cast<double>(w[i]), scale);
      sums[t] = s;
      total += s;
    }
    chunk_total[begin / (kGrain / weighted::kTile)] = total;
  });
  uint64_t total = 0;
  for (uint64_t c : chunk_total) total += c;
  return total;
}

std::tuple<at::Tensor, at::Tensor> weighted_sample_cpu(const at::Tensor& weights, int64_t num_samples, int64_t seed,
                                                       int64_t offset) {
  checks::weighted_sample(weights, num_samples);
  TORCH_CHECK(weights.is_cpu(), "weighted_sample: weights must be a CPU tensor, got ", weights.device());
  const at::Tensor w = weights.contiguous();
  const int64_t n = w.numel();
  at::Tensor indices = at::empty({num_samples}, w.options().dtype(at::kLong));
  at::Tensor probs = at::empty({num_samples}, w.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "weighted_sample_cpu", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const double max_weight = checked_max(wp, n);
    TORCH_CHECK(max_weight > 0.0, "weighted_sample: weights must have a positive sum, got all zeros");
    const int64_t tiles = at::divup(n, weighted::kTile);
    std::vector<uint64_t> prefix(tiles + 1);
    const int64_t s1 = weighted::first_shift(max_weight, n);
    const uint64_t t1 = tile_sums(wp, n, tiles, weighted::scale_of(s1), prefix.data());
    const int64_t s = weighted::final_shift(s1, t1, n);
    const weighted::Scale scale = weighted::scale_of(s);
    if (s != s1) tile_sums(wp, n, tiles, scale, prefix.data());
    uint64_t running = 0;  // exclusive prefix, in place
    for (int64_t t = 0; t <= tiles; ++t) {
      const uint64_t sum = t < tiles ? prefix[t] : 0;
      prefix[t] = running;
      running += sum;
    }
    const uint64_t total = prefix[tiles];
    const weighted::Guide g = weighted::guide_of(total, weighted::guide_bits(tiles));
    std::vector<int64_t> guide(g.buckets);
    at::parallel_for(0, tiles, kGrain / weighted::kTile, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b_end = weighted::first_bucket(prefix[t + 1], g.shift);
        for (int64_t b = weighted::first_bucket(prefix[t], g.shift); b < b_end; ++b) guide[b] = t;
      }
    });
    int64_t* ip = indices.mutable_data_ptr<int64_t>();
    double* pp = probs.mutable_data_ptr<double>();
    const uint64_t* pre = prefix.data();
    const int64_t* gd = guide.data();
    // Draws in batches of kBatch, each step of the search prefetching what the next one reads
    // for the whole batch (guide bucket, tile prefix, tile weights): the cache misses of a batch
    // overlap instead of following one another.
    at::parallel_for(0, num_samples, 4096, [&](int64_t begin, int64_t end) {
      uint64_t u[kBatch];
      int64_t t[kBatch];
      for (int64_t j0 = begin; j0 < end; j0 += kBatch) {
        const int64_t m = std::min<int64_t>(kBatch, end - j0);
        cpu::fill_element_bits(seed, offset, j0, m, u);  // vectorised Philox: draw_point's bits
        for (int64_t k = 0; k < m; ++k) {
          u[k] = philox::scale_below(u[k], total);
          __builtin_prefetch(gd + (u[k] >> g.shift));
        }
        for (int64_t k = 0; k < m; ++k) {
          t[k] = gd[u[k] >> g.shift];
          __builtin_prefetch(pre + t[k]);
        }
        for (int64_t k = 0; k < m; ++k) {
          t[k] = weighted::find_tile(pre, gd, g, tiles, u[k]);
          __builtin_prefetch(wp + t[k] * weighted::kTile);
          __builtin_prefetch(wp + std::min(n - 1, t[k] * weighted::kTile + weighted::kTile - 1));
        }
        for (int64_t k = 0; k < m; ++k) {
          uint64_t q = 0;
          ip[j0 + k] = weighted::find_in_tile(wp, n, t[k], u[k] - pre[t[k]], scale, &q);
          pp[j0 + k] = weighted::probability(q, total);
        }
      }
    });
  });
  return {indices, probs};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("weighted_sample", &weighted_sample_cpu);
}

}  // namespace dsampling
