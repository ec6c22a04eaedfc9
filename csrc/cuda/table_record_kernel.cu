// table_record_ on CUDA: one thread per recorded row writes its loss, epoch and (given logits)
// argmax correctness into the table. No host sync: an index or target out of range trips a
// device assertion, and a non-finite loss leaves its entry unchanged (the CPU twin raises; the
// Python ScoreTable counts such losses on the device and reports them at the next selection).
// An index recorded twice in one call keeps one of its records (the CPU twin: the last).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/argmax.h"
#include "common/checks.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace {

template <typename S, typename Z>
__global__ void table_record_kernel(S* scores, int8_t* correct, int32_t* seen_epoch, int64_t n, const int64_t* indices,
                                    const S* losses, int64_t rows, int32_t epoch, const Z* logits,
                                    const int64_t* targets, int64_t classes) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = indices[r];
    CUDA_KERNEL_ASSERT(i >= 0 && i < n && "table_record_: indices must be in [0, N) (the table's size)");
    if (!isfinite(static_cast<double>(losses[r]))) continue;
    if (logits != nullptr) {
      const int64_t label = targets[r];
      CUDA_KERNEL_ASSERT(label >= 0 && label < classes && "table_record_: targets must be in [0, C)");
      const Z* row = logits + r * classes;
      argmax::RowState s = argmax::start(static_cast<double>(row[0]));
      for (int64_t j = 1; j < classes; ++j) argmax::update(s, static_cast<double>(row[j]), j);
      correct[i] = static_cast<int8_t>(s.best_index == label);
    }
    scores[i] = losses[r];
    seen_epoch[i] = epoch;
  }
}

void table_record_cuda(const at::Tensor& scores, const at::Tensor& correct, const at::Tensor& seen_epoch,
                       const at::Tensor& indices, const at::Tensor& losses, int64_t epoch,
                       const std::optional<at::Tensor>& logits, const std::optional<at::Tensor>& targets) {
  checks::table_record(scores, correct, seen_epoch, indices, losses, epoch, logits, targets);
  TORCH_CHECK(scores.is_cuda(), "table_record_: scores must be a CUDA tensor, got ", scores.device());
  const c10::cuda::OptionalCUDAGuard guard(scores.device());
  const int64_t rows = indices.numel();
  if (rows == 0) return;
  // Batch-sized conversions, so that the kernel has one index, loss and target type.
  const at::Tensor idx = indices.contiguous().to(at::kLong);
  const at::Tensor loss = losses.contiguous().to(scores.scalar_type());
  const at::Tensor z = logits.has_value() ? logits->contiguous() : at::Tensor();
  const at::Tensor y = targets.has_value() ? targets->contiguous().to(at::kLong) : at::Tensor();
  const int64_t classes = logits.has_value() ? z.size(1) : 0;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "table_record_cuda", [&] {
    using S = scalar_t;
    const auto launch = [&](auto* logit_ptr) {
      table_record_kernel<<<cuda::grid_size(rows), cuda::kThreads, 0, stream>>>(
          scores.mutable_data_ptr<S>(), correct.mutable_data_ptr<int8_t>(), seen_epoch.mutable_data_ptr<int32_t>(),
          scores.numel(), idx.const_data_ptr<int64_t>(), loss.const_data_ptr<S>(), rows, static_cast<int32_t>(epoch),
          logit_ptr, logits.has_value() ? y.const_data_ptr<int64_t>() : nullptr, classes);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (!logits.has_value()) {
      launch(static_cast<const float*>(nullptr));
    } else {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "table_record_cuda_logits",
                                      [&] { launch(z.const_data_ptr<scalar_t>()); });
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("table_record_", &table_record_cuda);
}

}  // namespace dsampling
