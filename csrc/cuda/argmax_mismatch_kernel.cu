// argmax_mismatch on CUDA: each row gets a group of G = argmax::group_width(C) lanes of a warp
// (cuda/row_argmax.cuh: the row's argmax by shuffles, the CPU's to the bit). With a margin the softmax sum is added
// in the lane order of common/argmax.h, as the CPU twin adds it (only exp may differ in the last
// bit). cub then compacts the kept row indices in order. No host sync: the count stays on the
// device. Out-of-range labels trip a device-side assertion, as torch's own CUDA losses do.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

#include "common/argmax.h"
#include "common/checks.h"
#include "cuda/launch.cuh"
#include "cuda/row_argmax.cuh"

namespace dsampling {
namespace {

template <typename T, typename L, bool kGap>
__global__ void decide_rows_kernel(const T* logits, const L* labels, int64_t rows, int64_t classes, int group,
                                   double margin, bool* keep) {
  const cuda::RowGroups g(group);
  for (int64_t base = g.first; base < rows; base += g.step) {
    const int64_t r = g.row(base);
    const bool active = r < rows;
    const T* row = active ? logits + r * classes : nullptr;
    const auto s = cuda::group_row_state(row, classes, g);
    const int64_t label = active ? static_cast<int64_t>(labels[r]) : 0;
    CUDA_KERNEL_ASSERT(label >= 0 && label < classes && "argmax_mismatch: labels must be in [0, classes)");
    double sum = 0.0;
    if (kGap) {
      if (active && argmax::needs_gap<kGap>(s, label)) {
        for (int64_t j = g.lane; j < classes; j += group) {
          sum = add_rn(sum, argmax::scaled_term(static_cast<double>(row[j]), static_cast<double>(s.best)));
        }
      }
      for (int o = group / 2; o > 0; o >>= 1) sum = add_rn(sum, __shfl_down_sync(cuda::kFullMask, sum, o, group));
    }
    if (active && g.lane == 0) keep[r] = argmax::keep<kGap>(s, label, margin, sum);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> argmax_mismatch_cuda(const at::Tensor& logits,
                                                                    const at::Tensor& labels,
                                                                    std::optional<double> margin) {
  checks::argmax_mismatch(logits, labels, margin);
  TORCH_CHECK(logits.is_cuda(), "argmax_mismatch: logits must be a CUDA tensor, got ", logits.device());
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const at::Tensor z = logits.contiguous();
  const at::Tensor y = labels.contiguous();
  const int64_t rows = z.size(0), classes = z.size(1);
  at::Tensor keep = at::empty({rows}, z.options().dtype(at::kBool));
  at::Tensor kept = at::full({rows}, -1, z.options().dtype(at::kLong));
  at::Tensor count = at::zeros({}, z.options().dtype(at::kLong));
  if (rows == 0) return {keep, kept, count};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "argmax_mismatch_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "argmax_mismatch_cuda_labels", [&] {
      const scalar_t* zp = z.const_data_ptr<scalar_t>();
      const index_t* yp = y.const_data_ptr<index_t>();
      bool* kp = keep.mutable_data_ptr<bool>();
      const int group = argmax::group_width(classes);
      const int grid = cuda::grid_size(rows * group);
      if (margin.has_value()) {
        decide_rows_kernel<scalar_t, index_t, true>
            <<<grid, cuda::kThreads, 0, stream>>>(zp, yp, rows, classes, group, *margin, kp);
      } else {
        decide_rows_kernel<scalar_t, index_t, false>
            <<<grid, cuda::kThreads, 0, stream>>>(zp, yp, rows, classes, group, 0.0, kp);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  // Ordered stream compaction of the row indices whose flag is set.
  const thrust::counting_iterator<int64_t> row_ids(0);
  size_t temp_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, temp_bytes, row_ids, keep.const_data_ptr<bool>(),
                                            kept.mutable_data_ptr<int64_t>(), count.mutable_data_ptr<int64_t>(), rows,
                                            stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(temp_bytes)}, z.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.mutable_data_ptr(), temp_bytes, row_ids, keep.const_data_ptr<bool>(),
                                            kept.mutable_data_ptr<int64_t>(), count.mutable_data_ptr<int64_t>(), rows,
                                            stream));
  return {keep, kept, count};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CUDA, m) {
  m.impl("argmax_mismatch", &argmax_mismatch_cuda);
}

}  // namespace dsampling
