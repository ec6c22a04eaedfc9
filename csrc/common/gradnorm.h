// Per-sample gradient-norm scores (gradnorm_scores), shared by the CPU and CUDA kernels.
//
// score = ||softmax(z) - onehot(y)||_2, the norm of the loss gradient with respect to the logits
// (Katharopoulos & Fleuret 2018's upper bound of the per-sample gradient norm, up to a constant
// factor of the last layer). With m = max_j z_j, e_j = exp(z_j - m), Z = sum_j e_j,
// S = sum_{j != y} e_j and Q = sum_{j != y} e_j^2:
//     score^2 = (1 - p_y)^2 + sum_{j != y} p_j^2 = (S^2 + Q) / Z^2,
// computed without the cancellation of 1 - p_y when p_y is close to 1 (a well-learned sample
// keeps a small but accurate score instead of 0).
//
// The sums run in one order on both devices: G = argmax::group_width(C) lanes, lane t adding the
// terms j = t, t + G, ... in turn, then the tree lane t += lane t + s for s = G/2, ..., 1 (the
// CUDA kernel gives each row G lanes of a warp). For float32 accumulation (float16, bfloat16 and
// float32 logits) exp is the branch-free polynomial below, rounded the same way on both devices,
// so the scores are bit-identical; for float64 exp comes from each device's math library, which
// may round the last bit differently.
//
// Group sums of score^2 add the rows of each group in the chunked order of common/group_sums.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/macros.h"
#include "common/rounding.h"

namespace dsampling {
namespace gradnorm {

DS_INLINE float sqrt_rn(float x) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

DS_INLINE double sqrt_rn(double x) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

DS_INLINE float float_from_bits(int32_t bits) {
#ifdef __CUDA_ARCH__
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

// exp(x) for x <= 0 in float32 (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, a degree-6
// polynomial for exp(r), times 2^n built from its bits), within about 2 ulp of the true value.
// Below -87 it returns 0 (the true value is under 1.7e-38, beside a maximum term of 1). NaN stays
// NaN. No branches, so the CPU loops vectorise; every operation is rounded once, the same way on
// both devices (the CPU build has no FMA contraction, nvcc is told the same by the _rn intrinsics).
DS_INLINE float exp_nonpositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float n = sub_rn(add_rn(mul_rn(xc, 1.44269504088896341f), 12582912.0f), 12582912.0f);  // round
  float r = sub_rn(xc, mul_rn(n, 0.693359375f));
  r = sub_rn(r, mul_rn(n, -2.12194440e-4f));
  float p = 1.9875691500e-4f;
  p = add_rn(mul_rn(p, r), 1.3981999507e-3f);
  p = add_rn(mul_rn(p, r), 8.3334519073e-3f);
  p = add_rn(mul_rn(p, r), 4.1665795894e-2f);
  p = add_rn(mul_rn(p, r), 1.6666665459e-1f);
  p = add_rn(mul_rn(p, r), 5.0000001201e-1f);
  const float y = add_rn(add_rn(mul_rn(p, mul_rn(r, r)), r), 1.0f);
  const float nc = n >= -126.0f ? n : -126.0f;  // NaN -> -126: a defined conversion
  const float two_n = float_from_bits((static_cast<int32_t>(nc) + 127) << 23);
  const float out = mul_rn(y, two_n);
  return x < -87.0f ? 0.0f : out;
}

// exp(z - m) in the accumulation type A.
DS_INLINE float scaled_exp(float z, float m) { return exp_nonpositive(sub_rn(z, m)); }
DS_INLINE double scaled_exp(double z, double m) { return exp(sub_rn(z, m)); }

// The lane sums of one row.
template <typename A>
struct Sums {
  A z, other, other_sq;
};

// Add term j (e = exp(z_j - m)) of a row whose label is y.
template <typename A>
DS_INLINE void add_term(Sums<A>& s, A e, bool is_label) {
  const A o = is_label ? A(0) : e;
  s.z = add_rn(s.z, e);
  s.other = add_rn(s.other, o);
  s.other_sq = add_rn(s.other_sq, mul_rn(o, o));
}

DS_INLINE void merge(Sums<float>& a, const Sums<float>& b) {
  a.z = add_rn(a.z, b.z);
  a.other = add_rn(a.other, b.other);
  a.other_sq = add_rn(a.other_sq, b.other_sq);
}

DS_INLINE void merge(Sums<double>& a, const Sums<double>& b) {
  a.z = add_rn(a.z, b.z);
  a.other = add_rn(a.other, b.other);
  a.other_sq = add_rn(a.other_sq, b.other_sq);
}

// sqrt(S^2 + Q) / Z.
template <typename A>
DS_INLINE A score(const Sums<A>& s) {
  return div_rn(sqrt_rn(add_rn(mul_rn(s.other, s.other), s.other_sq)), s.z);
}

}  // namespace gradnorm
}  // namespace dsampling
