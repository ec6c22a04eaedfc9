// Row-wise argmax with torch.argmax's semantics and the softmax top-2 gap, shared by the CPU and
// CUDA kernels of argmax_mismatch.
//
// argmax: the first index of the maximum; NaN counts as larger than any number (the first NaN
// wins), as in torch.argmax. Values are compared in V = Compare<T>::type, T's own precision
// widened only as far as needed (float32 for float16/bfloat16/float32, float64 for float64): the
// order is exact there and GPUs with weak float64 (L4, L40, RTX) compare at float32 speed. Only the
// margin's softmax sum below runs in float64. A RowState holds the best value, its index and the runner-up; merge
// combines the states of two disjoint parts of a row, so the result is the same whatever the
// split and the order of the merges (the CUDA kernel gives each row a group of lanes).
//
// The gap p1 - p2 between the two largest softmax probabilities is
// (1 - exp(z2 - z1)) / sum_j exp(z_j - z1) in float64, NaN when the row holds NaN or +inf, or is
// all -inf, as torch.softmax gives. The sum runs in one order on both devices: group_width(C) = G
// lanes, lane t adding the terms j = t, t + G, ... in turn, then a tree over the lanes (lane
// t += lane t + s for s = G/2, ..., 1), which is how the CUDA kernel's G threads of a row add.
// exp itself comes from each device's math library, which may round differently in the last bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/rounding.h"

namespace dsampling {
namespace argmax {

constexpr int kMaxGroup = 32;

// The type a row of T is compared in: exact for T's values, float32 at least.
template <typename T>
using Compare = Wider<T>;

template <typename V>
DS_INLINE bool beats(V a, V b) { return a > b || (a != a && b == b); }

template <typename V>
struct RowState {
  V best, second;
  int64_t best_index;  // -1: no element yet
};

template <typename V>
DS_INLINE RowState<V> empty() { return {V(-INFINITY), V(-INFINITY), -1}; }

// The state of a row's first element, z0 at index 0.
template <typename V>
DS_INLINE RowState<V> start(V z0) { return {z0, V(-INFINITY), 0}; }

// Add element z with index j, larger than every index already in s.
template <typename V>
DS_INLINE void update(RowState<V>& s, V z, int64_t j) {
  if (s.best_index < 0 || beats(z, s.best)) {
    s.second = s.best;
    s.best = z;
    s.best_index = j;
  } else if (beats(z, s.second)) {
    s.second = z;
  }
}

// The state of the union of two disjoint parts of a row; symmetric in a and b.
template <typename V>
DS_INLINE RowState<V> merge(const RowState<V>& a, const RowState<V>& b) {
  if (b.best_index < 0) return a;
  if (a.best_index < 0) return b;
  const bool b_first = beats(b.best, a.best) || (!beats(a.best, b.best) && b.best_index < a.best_index);
  const RowState<V>& w = b_first ? b : a;
  const RowState<V>& l = b_first ? a : b;  // l.second never beats l.best
  return {w.best, beats(l.best, w.second) ? l.best : w.second, w.best_index};
}

// Lanes per row: a power of two, about C / 4 (each lane reads a few elements), at most 32.
DS_INLINE int group_width(int64_t classes) {
  int g = 1;
  while (g < kMaxGroup && 4 * static_cast<int64_t>(g) < classes) g <<= 1;
  return g;
}

// Whether the row has a gap (its maximum is finite, so it holds no NaN and no +inf).
template <typename V>
DS_INLINE bool has_gap(const RowState<V>& s) {
  return s.best == s.best && s.best != V(INFINITY) && s.best != V(-INFINITY);
}

// Whether the gap decides the sample: correctly classified, and a margin asked for.
template <bool kGap, typename V>
DS_INLINE bool needs_gap(const RowState<V>& s, int64_t label) {
  return kGap && s.best_index == label && has_gap(s);
}

// One term of the softmax denominator, scaled by the maximum.
DS_INLINE double scaled_term(double z, double best) { return exp(sub_rn(z, best)); }

// Keep the sample: misclassified, or (with a margin) correct but within `margin` of the
// runner-up; scaled_sum is the lane-ordered sum of scaled_term over the row when needs_gap.
template <bool kGap, typename V>
DS_INLINE bool keep(const RowState<V>& s, int64_t label, double margin, double scaled_sum) {
  if (s.best_index != label) return true;
  return needs_gap<kGap>(s, label) &&
         div_rn(sub_rn(1.0, exp(sub_rn(static_cast<double>(s.second), static_cast<double>(s.best)))), scaled_sum) <=
             margin;
}

// The argmax state of a whole row of T, in index order (the CPU twins).
template <typename T>
inline RowState<typename Compare<T>::type> row_state(const T* row, int64_t classes) {
  using V = typename Compare<T>::type;
  RowState<V> s = start(static_cast<V>(row[0]));
  for (int64_t j = 1; j < classes; ++j) update(s, static_cast<V>(row[j]), j);
  return s;
}

}  // namespace argmax
}  // namespace dsampling
