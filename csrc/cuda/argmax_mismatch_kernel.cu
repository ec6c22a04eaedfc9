// argmax_mismatch on CUDA: one thread per row runs the CPU twin's sequential row scan (so the
// decision, and the top-2 gap to the last bit, match the CPU), then cub compacts the kept row
// indices in order. No host sync: the count stays on the device. Out-of-range labels trip a
// device-side assertion, as torch's own CUDA losses do.
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

namespace dsampling {
namespace {

template <typename T, typename L, bool kGap>
__global__ void decide_rows_kernel(const T* logits, const L* labels, int64_t rows, int64_t classes, double margin,
                                   bool* keep) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* row = logits + r * classes;
    const int64_t label = static_cast<int64_t>(labels[r]);
    CUDA_KERNEL_ASSERT(label >= 0 && label < classes && "argmax_mismatch: labels must be in [0, classes)");
    argmax::RowState s = argmax::start(static_cast<double>(row[0]));
    for (int64_t j = 1; j < classes; ++j) argmax::update<kGap>(s, static_cast<double>(row[j]), j);
    keep[r] = argmax::keep<kGap>(s, label, margin);
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
      if (margin.has_value()) {
        decide_rows_kernel<scalar_t, index_t, true>
            <<<cuda::grid_size(rows), cuda::kThreads, 0, stream>>>(zp, yp, rows, classes, *margin, kp);
      } else {
        decide_rows_kernel<scalar_t, index_t, false>
            <<<cuda::grid_size(rows), cuda::kThreads, 0, stream>>>(zp, yp, rows, classes, 0.0, kp);
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
