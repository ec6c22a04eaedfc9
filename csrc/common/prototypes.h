// Per-element math of centroid_distances (IDS, seed 003), shared by the CPU and CUDA kernels.
//
// Both twins add in one fixed order, so their centroids and distances agree to the bit:
//   * class sums: per dimension, in the chunked order of common/group_sums.h (the classes are
//     the groups); the centroid is that sum divided by the class's row count (0 for an empty
//     class, whose count says it is empty);
//   * squared distances: kDistanceLanes lanes, lane t adding (x_j - c_j)^2 for the dimensions
//     j = t, t + kDistanceLanes, ... in turn, then a binary tree over the lanes (lane t += lane
//     t + s for s = kDistanceLanes/2, ..., 1): the CUDA kernel gives each row one warp and adds
//     with shuffles in exactly that order.
// Accumulation is in Wider<T> (float32 for float16/bfloat16/float32, float64 for float64); each
// operation is rounded once (common/rounding.h), so nvcc cannot fuse it into an FMA.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/rounding.h"

namespace dsampling {
namespace prototypes {

constexpr int kDistanceLanes = 32;

// (x - c)^2, each operation rounded once in A.
template <typename A>
DS_INLINE A squared_difference(A x, A c) {
  const A diff = sub_rn(x, c);
  return mul_rn(diff, diff);
}

// The mean of a class from its sum; 0 when the class is empty (no NaN to trip comparisons).
template <typename A>
DS_INLINE A class_mean(A sum, int64_t count) {
  return count > 0 ? div_rn(sum, static_cast<A>(count)) : A(0);
}

}  // namespace prototypes
}  // namespace dsampling
