// Argument checks shared by the CPU and CUDA host functions, so both twins reject the same
// inputs with the same words: "<op>: <arg> must be <expectation>, got <actual>".
// The fake kernels in dsampling_ext/ops.py repeat these checks with the same wording.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

namespace dsampling {
namespace checks {

inline bool is_loss_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void loss_histogram(const at::Tensor& values, int64_t bins,
                           const std::optional<at::ArrayRef<double>>& range) {
  TORCH_CHECK(is_loss_dtype(values.scalar_type()),
              "loss_histogram: values must be float16, bfloat16, float32 or float64, got ",
              values.scalar_type());
  TORCH_CHECK(values.numel() > 0, "loss_histogram: values must be non-empty, got shape ",
              values.sizes());
  TORCH_CHECK(bins >= 1 && bins <= INT32_MAX, "loss_histogram: bins must be in [1, 2**31 - 1], got ", bins);
  if (range.has_value()) {
    TORCH_CHECK(range->size() == 2, "loss_histogram: range must be (min, max), got ",
                range->size(), " values");
    const double lo = (*range)[0], hi = (*range)[1];
    TORCH_CHECK(std::isfinite(lo) && std::isfinite(hi),
                "loss_histogram: range must be finite, got (", lo, ", ", hi, ")");
    TORCH_CHECK(lo <= hi, "loss_histogram: range must have min <= max, got (", lo, ", ", hi, ")");
  }
}

inline void philox_fill_uniform(const at::Tensor& out) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_uniform_: out must be float32, got ",
              out.scalar_type());
  TORCH_CHECK(out.dim() == 1 && out.is_contiguous(),
              "philox_fill_uniform_: out must be a contiguous 1-D tensor, got shape ", out.sizes());
}

inline void philox4x32_10(const at::Tensor& counter) {
  TORCH_CHECK(counter.scalar_type() == at::kLong, "_philox4x32_10: counter must be int64, got ",
              counter.scalar_type());
  TORCH_CHECK(counter.dim() == 2 && counter.size(1) == 4,
              "_philox4x32_10: counter must have shape [N, 4], got ", counter.sizes());
}

}  // namespace checks
}  // namespace dsampling
