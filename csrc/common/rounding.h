// Floating-point arithmetic with one rounding per operation, in the precision of T.
//
// numpy evaluates histogram edges and bin indices in the data's own dtype (float16 arithmetic
// for float16 data). To reproduce its results bit for bit, every operation here is rounded to T
// separately, and on CUDA the _rn intrinsics stop nvcc from fusing a*b+c into an FMA, which would
// round once instead of twice and move values across bin edges.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "common/macros.h"

namespace dsampling {

// The type arithmetic on T is carried out in before rounding back to T.
template <typename T>
struct Wider {
  using type = T;
};
template <>
struct Wider<c10::Half> {
  using type = float;
};
template <>
struct Wider<c10::BFloat16> {
  using type = float;
};

DS_INLINE float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DS_INLINE double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
DS_INLINE float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DS_INLINE double sub_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
DS_INLINE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DS_INLINE double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
DS_INLINE float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
DS_INLINE double div_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// Unit roundoff of T: the largest relative error of one rounding.
template <typename T>
DS_INLINE double unit_roundoff();
template <>
DS_INLINE double unit_roundoff<double>() { return 0x1p-53; }
template <>
DS_INLINE double unit_roundoff<float>() { return 0x1p-24; }
template <>
DS_INLINE double unit_roundoff<c10::Half>() { return 0x1p-11; }
template <>
DS_INLINE double unit_roundoff<c10::BFloat16>() { return 0x1p-8; }

// Arithmetic in T: for float16/bfloat16 each result is computed in float32 and rounded to T,
// which is exact for +, -, *, / because float32 carries more than twice T's significand bits.
template <typename T>
struct Rounded {
  using W = typename Wider<T>::type;
  DS_HOST_DEVICE static T add(T a, T b) { return T(add_rn(W(a), W(b))); }
  DS_HOST_DEVICE static T sub(T a, T b) { return T(sub_rn(W(a), W(b))); }
  DS_HOST_DEVICE static T mul(T a, T b) { return T(mul_rn(W(a), W(b))); }
  DS_HOST_DEVICE static T div(T a, T b) { return T(div_rn(W(a), W(b))); }
};

}  // namespace dsampling
