// CPU histogram counting with numpy.histogram's bin assignment, shared by loss_histogram and
// histogram_select.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "common/binning.h"

namespace dsampling {
namespace cpu {

constexpr int64_t kGrain = 32768;
constexpr int64_t kBlock = 256;      // values per vectorised block
constexpr int64_t kFlush = 1 << 24;  // values between flushes of the 32-bit sub-histograms
constexpr int kLanes = 8;            // sub-histograms: consecutive increments hit different counters

// Count pass, per chunk and block of values:
//  1. a vectorised loop computes each value's scaled position with the reciprocal of the bin
//     width, in the precision of the data (float32 for 16-bit types); a position within edge_margin of an integer (and, with a range, any value outside
//     it, whose position is clamped onto an edge) is flagged -1, every other value's bin is the
//     truncated position, where numpy's exact arithmetic puts it too;
//  2. the few flagged values take numpy's exact path (true division, correction against the
//     stored edges), which also leaves -1 for values outside the edges;
//  3. increments go round-robin into kLanes 32-bit sub-histograms whose slot 0 absorbs the -1s.
// With a range, NaN and +-Inf lie outside it and are not counted, as in numpy. A collapsed range
// (denom 0: every edge equals the one value, histogram_select's constant history past 2^53) takes
// the exact path for every value, which puts it in the last bin (binning.h), instead of casting
// the NaN position 0 * inf to int.
template <typename T, typename S, bool kRange>
inline void count_bins(const T* x, int64_t n, const T* edges, int32_t k, S denom, int64_t* counts) {
  using W = typename Wider<T>::type;  // the fast position is computed in W even when S is double
  const bool exact_only = !(denom > S(0));
  std::mutex mu;
  const auto edge = [edges](int32_t j) { return edges[j]; };
  const W first = static_cast<W>(edges[0]);
  const W scale = static_cast<W>(k / static_cast<double>(denom));
  const W margin = static_cast<W>(
      binning::edge_margin<T>(static_cast<double>(edges[0]), static_cast<double>(edges[k]), k));
  const W half_gap = W(0.5) - margin;  // |frac - 1/2| >= half_gap: too close to an edge
  const int64_t stride = k + 1;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> lanes(kLanes * stride, 0);
    std::vector<int64_t> local(k, 0);
    int32_t bin[kBlock];
    const auto flush = [&] {
      for (int l = 0; l < kLanes; ++l) {
        for (int32_t j = 0; j < k; ++j) local[j] += lanes[l * stride + j + 1];
      }
      std::fill(lanes.begin(), lanes.end(), 0u);
    };
    for (int64_t base = begin; base < end; base += kBlock) {
      const int64_t m = std::min(kBlock, end - base);
      const T* v = x + base;
      if (exact_only) std::fill(bin, bin + m, -1);
      for (int64_t i = 0; !exact_only && i < m; ++i) {
        W f = (static_cast<W>(v[i]) - first) * scale;
        if (kRange) {  // two selects, not nested, so that they vectorise; NaN -> 0
          f = f >= W(0) ? f : W(0);
          f = f <= W(k) ? f : W(k);
        }
        const int32_t g = static_cast<int32_t>(f);
        const W frac = f - static_cast<W>(g);
        bin[i] = std::abs(frac - W(0.5)) >= half_gap ? -1 : g;
      }
      for (int64_t i = 0; i < m; ++i) {
        if (bin[i] >= 0) continue;
        bin[i] = binning::bin_index<T, S>(v[i], edge, k, denom);
      }
      int64_t i = 0;
      for (; i + kLanes <= m; i += kLanes) {
        for (int l = 0; l < kLanes; ++l) ++lanes[l * stride + bin[i + l] + 1];
      }
      for (; i < m; ++i) ++lanes[bin[i] + 1];
      if ((base - begin + kBlock) % kFlush == 0) flush();
    }
    flush();
    std::lock_guard<std::mutex> lock(mu);
    for (int32_t j = 0; j < k; ++j) counts[j] += local[j];
  });
}

}  // namespace cpu
}  // namespace dsampling
