// table_record_ on the CPU: write one training step's per-sample losses (and, given logits,
// argmax correctness) into the score table, stamped with the epoch.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/argmax.h"
#include "common/checks.h"

namespace dsampling {
namespace {

// 1 when the row's argmax (torch.argmax's rule) is its target, else 0; targets are checked.
template <typename T, typename L>
void row_correctness(const T* logits, const L* targets, int64_t rows, int64_t classes, int8_t* out) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / classes), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      TORCH_CHECK(targets[r] >= 0 && targets[r] < classes, "table_record_: targets must be in [0, ", classes,
                  "), got ", static_cast<int64_t>(targets[r]), " at index ", r);
      const T* row = logits + r * classes;
      out[r] = static_cast<int8_t>(argmax::row_state(row, classes).best_index == static_cast<int64_t>(targets[r]));
    }
  });
}

void table_record_cpu(const at::Tensor& scores, const at::Tensor& correct, const at::Tensor& seen_epoch,
                      const at::Tensor& indices, const at::Tensor& losses, int64_t epoch,
                      const std::optional<at::Tensor>& logits, const std::optional<at::Tensor>& targets) {
  checks::table_record(scores, correct, seen_epoch, indices, losses, epoch, logits, targets);
  TORCH_CHECK(scores.is_cpu(), "table_record_: scores must be a CPU tensor, got ", scores.device());
  const int64_t n = scores.numel(), rows = indices.numel();
  if (rows == 0) return;
  const at::Tensor idx = indices.contiguous().to(at::kLong);
  const at::Tensor loss = losses.contiguous().to(scores.scalar_type());
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(ip[r] >= 0 && ip[r] < n, "table_record_: indices must be in [0, ", n, ") (the table's size), got ",
                ip[r], " at index ", r);
  }
  std::vector<int8_t> right;
  if (logits.has_value()) {
    right.resize(rows);
    const at::Tensor z = logits->contiguous();
    const at::Tensor y = targets->contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "table_record_cpu", [&] {
      AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "table_record_cpu_targets", [&] {
        row_correctness(z.const_data_ptr<scalar_t>(), y.const_data_ptr<index_t>(), rows, z.size(1), right.data());
      });
    });
  }
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "table_record_cpu_scores", [&] {
    const scalar_t* lp = loss.const_data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      TORCH_CHECK(std::isfinite(static_cast<double>(lp[r])), "table_record_: losses must be finite, got ",
                  static_cast<double>(lp[r]), " at index ", r);
    }
    scalar_t* sp = scores.mutable_data_ptr<scalar_t>();
    int8_t* cp = correct.mutable_data_ptr<int8_t>();
    int32_t* ep = seen_epoch.mutable_data_ptr<int32_t>();
    // In order, so that an index recorded twice in one call keeps its last record.
    for (int64_t r = 0; r < rows; ++r) {
      sp[ip[r]] = lp[r];
      ep[ip[r]] = static_cast<int32_t>(epoch);
      if (!right.empty()) cp[ip[r]] = right[r];
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("table_record_", &table_record_cpu);
}

}  // namespace dsampling
