// table_record_ on CUDA: each recorded row gets a group of lanes of a warp (cuda/row_argmax.cuh:
// G = argmax::group_width(C) lanes with logits, a whole warp without), which computes the row's
// argmax correctness and looks through the later rows of the call for the same index; lane 0
// writes the loss, epoch and correctness. No host sync: an index or target out of range trips a
// device assertion, and a non-finite loss leaves its entry unchanged (the CPU twin raises; the
// Python ScoreTable counts such losses on the device and reports them at the next selection).
// An index recorded twice in one call keeps its last record (with a finite loss), as on the CPU:
// a row that a later row of the same index supersedes writes nothing, so the three fields always
// come from one record and the result does not depend on the threads' order. The look-ahead costs
// O(B^2 / G) index reads for B rows: ~8M at B = 4096, nothing beside a training step.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/argmax.h"
#include "common/checks.h"
#include "cuda/launch.cuh"
#include "cuda/row_argmax.cuh"

namespace dsampling {
namespace {

template <typename S, typename Z>
__global__ void table_record_kernel(S* scores, int8_t* correct, int32_t* seen_epoch, int64_t n, const int64_t* indices,
                                    const S* losses, int64_t rows, int32_t epoch, const Z* logits,
                                    const int64_t* targets, int64_t classes, int group) {
  const cuda::RowGroups g(group);
  for (int64_t base = g.first; base < rows; base += g.step) {
    const int64_t r = g.row(base);
    const bool active = r < rows;
    const int64_t i = active ? indices[r] : -1;
    const bool finite = active && isfinite(static_cast<double>(losses[r]));
    int superseded = 0;  // a later row of this call records the same index with a finite loss
    if (finite) {
      for (int64_t later = r + 1 + g.lane; later < rows; later += group) {
        superseded |= indices[later] == i && isfinite(static_cast<double>(losses[later]));
      }
    }
    for (int o = group / 2; o > 0; o >>= 1) superseded |= __shfl_xor_sync(cuda::kFullMask, superseded, o, group);
    int8_t right = 0;
    if (logits != nullptr) {  // warp-uniform: every lane takes part in the shuffles
      const auto s = cuda::group_row_state(active ? logits + r * classes : static_cast<const Z*>(nullptr), classes, g);
      const int64_t label = active ? targets[r] : 0;
      CUDA_KERNEL_ASSERT(label >= 0 && label < classes && "table_record_: targets must be in [0, C)");
      right = static_cast<int8_t>(s.best_index == label);
    }
    if (!active || g.lane != 0) continue;
    CUDA_KERNEL_ASSERT(i >= 0 && i < n && "table_record_: indices must be in [0, N) (the table's size)");
    if (!finite || superseded) continue;
    if (logits != nullptr) correct[i] = right;
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
    const int group = logits.has_value() ? argmax::group_width(classes) : cuda::kWarp;
    const auto launch = [&](auto* logit_ptr) {
      table_record_kernel<<<cuda::grid_size(rows * group), cuda::kThreads, 0, stream>>>(
          scores.mutable_data_ptr<S>(), correct.mutable_data_ptr<int8_t>(), seen_epoch.mutable_data_ptr<int32_t>(),
          scores.numel(), idx.const_data_ptr<int64_t>(), loss.const_data_ptr<S>(), rows, static_cast<int32_t>(epoch),
          logit_ptr, logits.has_value() ? y.const_data_ptr<int64_t>() : nullptr, classes, group);
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
