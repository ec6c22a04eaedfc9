// Weighted sampling with replacement (weighted_sample), shared by the CPU and CUDA kernels.
//
// The weights become 64-bit fixed-point integers q_i = floor(w_i * 2^s), and a draw is an exact
// integer u, uniform in [0, T) with T = sum_i q_i, mapped to the index i with C_(i-1) <= u < C_i
// (C the inclusive prefix sums of q). Integer sums are exact, so the prefix sums do not depend on
// the order they are added in: any scan on any device gives the same bits, and every correct
// search finds the same index. Both twins therefore draw the same indices for the same
// (seed, offset) without fixing a summation order, and the probability returned for a draw,
// q_i / T, is exactly the one it was drawn with (up to Lemire's bias below T / 2^64).
//
// The scale 2^s: s1 = 62 - bitlen(N) - e, e the exponent with max(w) < 2^e, keeps T1 = sum of
// floor(w_i 2^s1) below 2^62; then s = s1 + max(0, 62 - bitlen(T1 + N)) raises the scale as far
// as the total allows (W 2^s1 < T1 + N, so W 2^s < 2^62 and T < 2^63). A weight gets its share
// to within W * 2^-61 or so (a float64 running sum resolves W * 2^-53), and only a weight below
// about W * 2^-62 gets none. s comes from an exact maximum and an exact integer sum, so it is the
// same on both devices. The products w * 2^(s/2) * 2^(s - s/2) are exact (two factors, each a
// power of two within double's range, so any s in [-2000, 2000] works), hence so is the floor.
//
// The index structure: tiles of kTile weights; P[t] = sum of q over the tiles before t (P[tiles]
// = T). A guide table (Chen & Asau's cutpoints) maps the top bits of u to the first candidate
// tile: guide[b] = the tile holding the point b * 2^shift; a draw binary-searches the tiles
// guide[b] .. guide[b + 1] (usually one or two) and then scans at most kTile weights.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/philox.h"
#include "common/rounding.h"

namespace dsampling {
namespace weighted {

constexpr int64_t kTile = 32;

DS_INLINE int bit_length(uint64_t x) {
#ifdef __CUDA_ARCH__
  return 64 - __clzll(static_cast<long long>(x));
#else
  return x == 0 ? 0 : 64 - __builtin_clzll(x);
#endif
}

// 2^s as two factors, each within double's normal range for |s| <= 2000.
struct Scale {
  double a, b;
};

DS_INLINE Scale scale_of(int64_t s) {
  const int half = static_cast<int>(s / 2);
  return {ldexp(1.0, half), ldexp(1.0, static_cast<int>(s - half))};
}

// floor(w * 2^s) for 0 <= w * 2^s < 2^63.
DS_INLINE uint64_t fixed(double w, Scale scale) {
  return static_cast<uint64_t>(static_cast<int64_t>(mul_rn(mul_rn(w, scale.a), scale.b)));
}

// The first scale: every q_i < 2^(62 - bitlen(N)), so T1 < 2^62. max_weight > 0 and finite.
DS_INLINE int64_t first_shift(double max_weight, int64_t n) {
  int e = 0;
  frexp(max_weight, &e);  // max_weight = f * 2^e, f in [0.5, 1): max_weight < 2^e
  return 62 - bit_length(static_cast<uint64_t>(n)) - e;
}

// The final scale from T1 = sum of floor(w_i 2^s1), exact.
DS_INLINE int64_t final_shift(int64_t s1, uint64_t t1, int64_t n) {
  const int d = 62 - bit_length(t1 + static_cast<uint64_t>(n));
  return s1 + (d > 0 ? d : 0);
}

// Guide table geometry for a total T >= 1 and 2^bits buckets at most: bucket(u) = u >> shift.
struct Guide {
  int shift;
  int64_t buckets;
};

DS_INLINE int guide_bits(int64_t tiles) { return bit_length(static_cast<uint64_t>(tiles)); }

DS_INLINE Guide guide_of(uint64_t total, int bits) {
  const int over = bit_length(total - 1) - bits;
  const int shift = over > 0 ? over : 0;
  return {shift, static_cast<int64_t>(((total - 1) >> shift) + 1)};
}

// Buckets [first, end) whose start point b << shift lies in the tile's range [lo, hi).
DS_INLINE int64_t first_bucket(uint64_t lo, int shift) {
  const uint64_t mask = (uint64_t{1} << shift) - 1;
  return static_cast<int64_t>((lo + mask) >> shift);
}

// Draw j: u uniform in [0, total) from the 64-bit word pair 0 of Philox block j.
DS_INLINE uint64_t draw_point(int64_t seed, int64_t offset, int64_t j, uint64_t total) {
  return philox::scale_below(philox::element_bits(seed, offset, static_cast<uint64_t>(j), 0), total);
}

// The tile holding u: the last t in [guide[b], guide[b + 1]] with prefix[t] <= u. It has a
// non-zero sum (a later tile with the same prefix would also qualify).
DS_INLINE int64_t find_tile(const uint64_t* prefix, const int64_t* guide, Guide g, int64_t tiles, uint64_t u) {
  const int64_t b = static_cast<int64_t>(u >> g.shift);
  int64_t lo = guide[b];
  int64_t hi = b + 1 < g.buckets ? guide[b + 1] : tiles - 1;
  while (lo < hi) {  // invariant: prefix[lo] <= u, and the answer is in [lo, hi]
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (prefix[mid] <= u) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The index in tile t (elements [t * kTile, min(n, (t + 1) * kTile))) holding the remainder r,
// r < the tile's sum: the first whose running sum of q exceeds r, i.e. the tile's first index
// plus the number of running sums <= r (counted without branches: the exit of a search loop
// mispredicts on every draw). Writes its q.
template <typename T>
DS_INLINE int64_t find_in_tile(const T* weights, int64_t n, int64_t t, uint64_t r, Scale scale, uint64_t* q_out) {
  const int64_t begin = t * kTile;
  const int64_t len = begin + kTile < n ? kTile : n - begin;
  uint64_t acc = 0;
  int64_t below = 0;
  for (int64_t i = 0; i < len; ++i) {
    acc += fixed(static_cast<double>(weights[begin + i]), scale);
    below += acc <= r ? 1 : 0;
  }
  const int64_t i = begin + (below < len ? below : len - 1);  // below < len for r below the tile's sum
  *q_out = fixed(static_cast<double>(weights[i]), scale);
  return i;
}

// Probability of an index with fixed-point weight q: q / T, rounded once each way.
DS_INLINE double probability(uint64_t q, uint64_t total) {
  return div_rn(static_cast<double>(q), static_cast<double>(total));
}

}  // namespace weighted
}  // namespace dsampling
