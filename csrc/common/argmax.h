// Row-wise argmax with torch.argmax's semantics and the softmax top-2 gap, shared by the CPU and
// CUDA kernels of argmax_mismatch.
//
// argmax: the first index of the maximum; NaN counts as larger than any number (the first NaN
// wins), as in torch.argmax. The gap p1 - p2 between the two largest softmax probabilities is
// (1 - exp(z2 - z1)) / sum_j exp(z_j - z1) in float64, from an online log-sum-exp (one pass):
// NaN when the row holds NaN or +inf, or is all -inf, as torch.softmax gives.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace dsampling {
namespace argmax {

DS_INLINE bool beats(double a, double b) { return a > b || (a != a && b == b); }

struct RowState {
  double best, second, scaled_sum;  // scaled_sum = sum_j exp(z_j - best) (only with a margin)
  int64_t best_index;
};

DS_INLINE RowState start(double z0) { return {z0, -INFINITY, 1.0, 0}; }

template <bool kGap>
DS_INLINE void update(RowState& s, double z, int64_t j) {
  if (beats(z, s.best)) {
    if (kGap) s.scaled_sum = s.scaled_sum * exp(s.best - z) + 1.0;
    s.second = s.best;
    s.best = z;
    s.best_index = j;
  } else {
    if (kGap) s.scaled_sum += z == s.best ? 1.0 : exp(z - s.best);  // -inf == -inf counts as a tie
    if (beats(z, s.second)) s.second = z;
  }
}

// Softmax probability gap between the top two classes (NaN as described above).
DS_INLINE double top2_gap(const RowState& s) {
  if (s.best != s.best || s.best == INFINITY || s.best == -INFINITY) return NAN;
  return (1.0 - exp(s.second - s.best)) / s.scaled_sum;
}

// Keep the sample: misclassified, or (with a margin) correct but within `margin` of the runner-up.
template <bool kGap>
DS_INLINE bool keep(const RowState& s, int64_t label, double margin) {
  if (s.best_index != label) return true;
  return kGap && top2_gap(s) <= margin;
}

}  // namespace argmax
}  // namespace dsampling
