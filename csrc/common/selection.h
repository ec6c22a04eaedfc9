// Per-sample selection math of histogram_select, shared by the CPU and CUDA kernels.
//
// Sums over the loss history use one fixed order on both devices: kLanes lanes, lane t adding
// slots t, t + kLanes, ... in turn, then a binary tree over the lanes (lane t += lane t + s for
// s = kLanes/2, ..., 1). The CUDA kernel runs one block of kLanes threads in exactly that order,
// so the mean and standard deviation, and with them the clip bounds, agree to the bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/rounding.h"

namespace dsampling {
namespace selection {

constexpr int kLanes = 256;
constexpr int64_t kMaxHistory = 65536;
constexpr int64_t kMaxBins = 2048;

enum Rule : int64_t { kPmf = 0, kCdf = 1 };
enum ClipMode : int64_t { kNoClip = 0, kClamp = 1, kDrop = 2 };
enum KeepMode : int64_t { kBernoulli = 0, kFraction = 1, kTop = 2 };

struct ClipBounds {
  double lo, hi;
  int64_t mode;
};

// Sum of f(0..n-1) in the lane/tree order above, sequentially (the CPU kernels' form of it;
// CUDA kernels run one thread per lane). Rows of kLanes values, so the inner loop vectorises.
template <typename F>
inline double lane_tree_sum(int64_t n, const F& f) {
  double partial[kLanes] = {0.0};
  for (int64_t base = 0; base < n; base += kLanes) {
    const int64_t m = n - base < kLanes ? n - base : kLanes;
    for (int64_t t = 0; t < m; ++t) partial[t] = add_rn(partial[t], f(base + t));
  }
  for (int s = kLanes / 2; s > 0; s >>= 1) {
    for (int t = 0; t < s; ++t) partial[t] = add_rn(partial[t], partial[t + s]);
  }
  return partial[0];
}

// mean -+ sigma * sd; sd is the population standard deviation (ddof = 0).
DS_INLINE ClipBounds clip_bounds(double mean, double sd, double sigma, int64_t mode) {
  const double half_width = mul_rn(sigma, sd);
  return {sub_rn(mean, half_width), add_rn(mean, half_width), mode};
}

// The clipped value of v; false when the drop mode ignores it.
DS_INLINE bool clip(double v, const ClipBounds& b, double* out) {
  if (b.mode == kClamp) {  // two plain selects (maxsd/minsd on x86): no mispredicted branches
    const double raised = v < b.lo ? b.lo : v;
    *out = raised > b.hi ? b.hi : raised;
    return true;
  }
  *out = v;
  return b.mode == kNoClip || (v >= b.lo && v <= b.hi);
}

// scipy.stats.percentileofscore(H, l, kind="rank") / 100, from left = #(H < l), right = #(H <= l).
DS_INLINE double percentile(int64_t left, int64_t right, int64_t n) {
  return static_cast<double>(left + right + (left < right ? 1 : 0)) / (2.0 * static_cast<double>(n));
}

// left = #(sorted < c) and right = #(sorted <= c) over the ascending sorted[0, n), by binary search.
struct Ranks {
  int64_t left, right;
};

DS_INLINE Ranks rank_counts(const double* sorted, int64_t n, double c) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int64_t left = lo;
  hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] <= c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return {left, lo};
}

// x ** beta. Whole exponents up to 64 multiply in a fixed order, so both devices round alike;
// other exponents use pow, whose last bit may differ between the CPU and CUDA libraries.
DS_INLINE double power(double x, double beta) {
  if (beta == floor(beta) && beta >= 0.0 && beta <= 64.0) {
    double r = 1.0;
    for (int i = 0; i < static_cast<int>(beta); ++i) r = mul_rn(r, x);
    return r;
  }
  return pow(x, beta);
}

// Number of candidates kept by the fraction and top modes: ceil(alpha * candidates) in float64.
DS_INLINE int64_t kept_count(double keep_fraction, int64_t candidates) {
  return static_cast<int64_t>(ceil(mul_rn(keep_fraction, static_cast<double>(candidates))));
}

// The fraction and top modes keep the first kept_count candidates in increasing (rank_key, index)
// order: fraction by the uniform u, top by the higher count first (p = count / n, so the order of
// p) and then u. u is (word >> 8) / 2^24, so its 24 bits order exactly like u; a count is at most
// kMaxHistory. Keys of candidates are below 2^kRankKeyBits; kNotCandidate marks the others.
constexpr int kRankKeyBits = 41;
constexpr uint64_t kNotCandidate = ~uint64_t{0};

DS_INLINE uint64_t rank_key(int64_t keep_mode, int64_t count, float u) {
  const uint64_t u_bits = static_cast<uint64_t>(u * 16777216.0f);  // exact
  return keep_mode == kTop ? (static_cast<uint64_t>(kMaxHistory - count) << 24) | u_bits : u_bits;
}

}  // namespace selection
}  // namespace dsampling
