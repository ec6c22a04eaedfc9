// Histogram binning with numpy.histogram's exact semantics, shared by the CPU and CUDA kernels.
//
// Edges follow numpy: with no explicit range they are linspace(min, max, k + 1) evaluated in the
// data's dtype; with a range (lo, hi) they are evaluated in float64 and then rounded to the dtype.
// A value v is in bin j iff edges[j] <= v < edges[j+1]; the last bin also takes v == edges[k];
// values outside [edges[0], edges[k]] are not counted. Bin lookup repeats numpy's arithmetic
// (scaled index, then a one-step correction against the stored edges), so a value lying within
// an ulp of an edge lands where numpy puts it.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/rounding.h"

namespace dsampling {
namespace binning {

// Bin-count rules; kFixed means "use the given count". Values match the rule names in dsampling_ext/ops/_common.py.
enum Rule : int64_t { kFixed = 0, kSturges = 1, kSqrt = 2, kRice = 3 };

// Number of bins for n values: sturges ceil(log2 n) + 1, sqrt ceil(sqrt n), rice ceil(2 n^(1/3)).
// Integer arithmetic, so powers of two and perfect squares/cubes never round the wrong way.
DS_INLINE int64_t bin_count(int64_t rule, int64_t n, int64_t fixed) {
  if (rule == kFixed) return fixed;
  if (n < 1) n = 1;
  if (rule == kSturges) {
    int64_t bits = 0;  // bit width of n - 1 == ceil(log2 n)
    for (uint64_t x = static_cast<uint64_t>(n - 1); x != 0; x >>= 1) ++bits;
    return bits + 1;
  }
  if (rule == kSqrt) {  // smallest r with r*r >= n
    int64_t r = static_cast<int64_t>(sqrt(static_cast<double>(n)));
    while (r * r < n) ++r;
    while (r > 1 && (r - 1) * (r - 1) >= n) --r;
    return r;
  }
  // rice: smallest r with r^3 >= 8 n
  int64_t r = static_cast<int64_t>(2.0 * cbrt(static_cast<double>(n)));
  if (r < 1) r = 1;
  while (r * r * r < 8 * n) ++r;
  while (r > 1 && (r - 1) * (r - 1) * (r - 1) >= 8 * n) --r;
  return r;
}

// numpy._get_outer_edges: an empty range [x, x] becomes [x - 0.5, x + 0.5], in S arithmetic.
template <typename S>
struct OuterEdges {
  S first;
  S last;
};

template <typename S>
DS_INLINE OuterEdges<S> outer_edges(S first, S last) {
  if (first == last) {
    return {Rounded<S>::sub(first, S(0.5)), Rounded<S>::add(last, S(0.5))};
  }
  return {first, last};
}

// Edge j of numpy.linspace(first, last, k + 1) evaluated in S arithmetic.
template <typename S>
DS_INLINE S linspace_edge(int64_t j, int64_t k, S first, S last) {
  if (j == k) return last;
  const S delta = Rounded<S>::sub(last, first);
  const S step = Rounded<S>::div(delta, S(static_cast<double>(k)));
  const S jj = S(static_cast<double>(j));
  S y;
  if (step == S(0)) {  // numpy's special case for denormal steps (gh-5437)
    y = Rounded<S>::mul(Rounded<S>::div(jj, S(static_cast<double>(k))), delta);
  } else {
    y = Rounded<S>::mul(jj, step);
  }
  return Rounded<S>::add(y, first);
}

// Whether edge j and edge j + 1 of linspace(outer edges), rounded to T, leave bin j a width: numpy
// raises "Too many bins for data range" when any bin has none (edges repeat, e.g. a constant
// input whose +-0.5 widening is lost to rounding: bfloat16 >= 256, float16 >= 2048, float32 >=
// 2^24, float64 >= 2^53). NaN edges leave none either.
template <typename T, typename S>
DS_INLINE bool bin_has_width(int64_t j, int64_t k, const OuterEdges<S>& outer) {
  return T(linspace_edge<S>(j, k, outer.first, outer.last)) < T(linspace_edge<S>(j + 1, k, outer.first, outer.last));
}

// numpy's scaled position of v, (v - first) / denom * k, clamped to [-1, k]; its truncation is
// numpy's first guess of the bin. S is the type numpy divides in: T without a range, double with
// one (denom = hi - lo). A NaN position (0 / 0: a collapsed range, where the +-0.5 widening of a
// constant input was lost to rounding and every edge equals v) becomes k, so that correct_index
// gives the last bin, the one bin whose closed end holds v under numpy's rule (edges[k-1] <= v <=
// edges[k]); it never reads edges(-1). Branch-free, so CPU loops over it vectorise.
template <typename T, typename S>
DS_INLINE S scaled_position(T v, T first, S denom, int32_t k) {
  const T offset = Rounded<T>::sub(v, first);
  const S kk = S(static_cast<float>(k));
  const S scaled = Rounded<S>::mul(Rounded<S>::div(S(offset), denom), kk);
  const S low = scaled < S(-1.0f) ? S(-1.0f) : scaled;
  return !(low <= kk) ? kk : low;
}

template <typename T, typename S>
DS_INLINE int32_t scaled_index(T v, T first, S denom, int32_t k) {
  return static_cast<int32_t>(static_cast<typename Wider<S>::type>(scaled_position<T, S>(v, first, denom, k)));
}

// How close (in bins) a position may come to an integer before the edge correction can change
// the bin. numpy's position differs from the exact one by at most ~4uk bins, a position computed
// with the rounded reciprocal (v - first) * (k / denom) by ~4uk, and each stored edge from its exact place
// by ~3uk + u*max(|first|,|last|)*k/(last - first) bins (u = T's unit roundoff); the margin is
// twice their sum. A value whose position is farther than this from every integer lies strictly
// inside the bin its truncated position names, which is where numpy's correction leaves it.
template <typename T>
DS_INLINE double edge_margin(double first, double last, int32_t k) {
  const double big = fabs(first) > fabs(last) ? fabs(first) : fabs(last);
  return 2.0 * unit_roundoff<T>() * k * (12.0 + 2.0 * big / (last - first));
}

// The bin of v given numpy's guess (in [-1, k]): values within an ulp of an edge move one bin, as
// in numpy. Requires edges[0] <= v <= edges[k]; reads only edges[0..k].
template <typename T, typename EdgeAccess>
DS_INLINE int32_t correct_index(T v, int32_t guess, const EdgeAccess& edges, int32_t k) {
  int32_t idx = guess >= k ? k - 1 : guess < 0 ? 0 : guess;
  idx -= static_cast<int32_t>(v < edges(idx));  // branch-free: the moves are rare but unpredictable
  idx += static_cast<int32_t>(idx != k - 1 && v >= edges(idx + 1));
  return idx;
}

// Bin of v among k uniform bins with stored edges[0..k], or -1 when v is outside them (or NaN).
template <typename T, typename S, typename EdgeAccess>
DS_INLINE int32_t bin_index(T v, const EdgeAccess& edges, int32_t k, S denom) {
  const T first = edges(0);
  if (!(v >= first && v <= edges(k))) return -1;
  return correct_index(v, scaled_index<T, S>(v, first, denom, k), edges, k);
}

}  // namespace binning
}  // namespace dsampling
