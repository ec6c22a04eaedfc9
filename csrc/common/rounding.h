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

// name_rn(a, b): a OP b rounded once; on the device through the non-contractible intrinsic.
#ifdef __CUDA_ARCH__
#define DS_ROUNDED_OP(name, op, float_intrinsic, double_intrinsic)                  \
  DS_INLINE float name(float a, float b) { return float_intrinsic(a, b); }       \
  DS_INLINE double name(double a, double b) { return double_intrinsic(a, b); }
#else
#define DS_ROUNDED_OP(name, op, float_intrinsic, double_intrinsic) \
  DS_INLINE float name(float a, float b) { return a op b; }      \
  DS_INLINE double name(double a, double b) { return a op b; }
#endif

DS_ROUNDED_OP(add_rn, +, __fadd_rn, __dadd_rn)
DS_ROUNDED_OP(sub_rn, -, __fsub_rn, __dsub_rn)
DS_ROUNDED_OP(mul_rn, *, __fmul_rn, __dmul_rn)
DS_ROUNDED_OP(div_rn, /, __fdiv_rn, __ddiv_rn)
#undef DS_ROUNDED_OP

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
