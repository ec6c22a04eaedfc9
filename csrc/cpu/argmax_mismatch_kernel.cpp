#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

#include "common/argmax.h"
#include "common/checks.h"
#include "common/rounding.h"
#include "cpu/compact.h"

namespace dsampling {
namespace {

constexpr int64_t kRowBlock = 64;

// The exact row scan of common/argmax.h, one row at a time (the margin path, and NaN rows). With a
// margin, the softmax sum of a correctly classified row is added in common/argmax.h's lane order.
template <typename T, bool kGap>
bool keep_row(const T* row, int64_t classes, int64_t label, double margin) {
  const auto s = argmax::row_state(row, classes);
  double sum = 0.0;
  if (argmax::needs_gap<kGap>(s, label)) {
    const int64_t lanes = argmax::group_width(classes);
    double lane[argmax::kMaxGroup] = {0.0};
    for (int64_t j = 0; j < classes; ++j) {
      lane[j & (lanes - 1)] = add_rn(lane[j & (lanes - 1)], argmax::scaled_term(static_cast<double>(row[j]), static_cast<double>(s.best)));
    }
    for (int64_t w = lanes / 2; w > 0; w >>= 1) {
      for (int64_t t = 0; t < w; ++t) lane[t] = add_rn(lane[t], lane[t + w]);
    }
    sum = lane[0];
  }
  return argmax::keep<kGap>(s, label, margin, sum);
}

// One branch-free scan for a bad label; the error names the first one.
template <typename L>
void check_labels(const L* labels, int64_t begin, int64_t end, int64_t classes) {
  int bad = 0;
  for (int64_t r = begin; r < end; ++r) bad |= static_cast<int>(labels[r] < 0) | static_cast<int>(labels[r] >= classes);
  if (!bad) return;
  for (int64_t r = begin; r < end; ++r) {
    TORCH_CHECK(labels[r] >= 0 && labels[r] < classes, "argmax_mismatch: labels must be in [0, ", classes, "), got ",
                static_cast<int64_t>(labels[r]), " at index ", r);
  }
}

// Without a margin: blocks of kRowBlock rows scanned column by column, so that the compiler
// vectorises across rows (a row of 10 classes is too short to vectorise along). A block holding
// a NaN is redone with the exact scan, where NaN wins as in torch.argmax.
template <typename T, typename L>
void mismatch_rows(const T* __restrict__ logits, const L* __restrict__ labels, int64_t begin, int64_t end,
                   int64_t classes, bool* __restrict__ keep) {
  using W = typename Wider<T>::type;
  W best[kRowBlock];
  int32_t index[kRowBlock];
  for (int64_t base = begin; base < end; base += kRowBlock) {
    const int64_t m = std::min(kRowBlock, end - base);
    const T* block = logits + base * classes;
    int32_t nan = 0;
    for (int64_t r = 0; r < m; ++r) {
      best[r] = static_cast<W>(block[r * classes]);
      index[r] = 0;
      nan |= best[r] != best[r];
    }
    for (int64_t j = 1; j < classes; ++j) {
      const int32_t jj = static_cast<int32_t>(j);
      for (int64_t r = 0; r < m; ++r) {  // select by integer masks: the form gcc vectorises
        const W v = static_cast<W>(block[r * classes + j]);
        const W b = best[r];
        const int32_t greater = -static_cast<int32_t>(v > b);
        nan |= -static_cast<int32_t>(v != v);
        best[r] = v > b ? v : b;
        index[r] = (jj & greater) | (index[r] & ~greater);
      }
    }
    if (nan) {
      for (int64_t r = 0; r < m; ++r) keep[base + r] = keep_row<T, false>(block + r * classes, classes, labels[base + r], 0.0);
    } else {
      for (int64_t r = 0; r < m; ++r) keep[base + r] = index[r] != labels[base + r];
    }
  }
}

template <typename T, typename L>
void decide_rows(const T* logits, const L* labels, int64_t rows, int64_t classes, std::optional<double> margin,
                 bool* keep) {
  at::parallel_for(0, rows, std::max<int64_t>(kRowBlock, 65536 / classes), [&](int64_t begin, int64_t end) {
    check_labels(labels, begin, end, classes);
    if (margin.has_value()) {
      for (int64_t r = begin; r < end; ++r) keep[r] = keep_row<T, true>(logits + r * classes, classes, labels[r], *margin);
    } else if (classes <= INT32_MAX) {
      mismatch_rows(logits, labels, begin, end, classes, keep);
    } else {
      for (int64_t r = begin; r < end; ++r) keep[r] = keep_row<T, false>(logits + r * classes, classes, labels[r], 0.0);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> argmax_mismatch_cpu(const at::Tensor& logits, const at::Tensor& labels,
                                                                   std::optional<double> margin) {
  checks::argmax_mismatch(logits, labels, margin);
  TORCH_CHECK(logits.is_cpu(), "argmax_mismatch: logits must be a CPU tensor, got ", logits.device());
  const at::Tensor z = logits.contiguous();
  const at::Tensor y = labels.contiguous();
  const int64_t rows = z.size(0), classes = z.size(1);
  at::Tensor keep = at::empty({rows}, z.options().dtype(at::kBool));
  at::Tensor kept = at::empty({rows}, z.options().dtype(at::kLong));
  at::Tensor count = at::empty({}, z.options().dtype(at::kLong));
  bool* k = keep.mutable_data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "argmax_mismatch_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "argmax_mismatch_cpu_labels", [&] {
      const scalar_t* zp = z.const_data_ptr<scalar_t>();
      const index_t* yp = y.const_data_ptr<index_t>();
      decide_rows<scalar_t, index_t>(zp, yp, rows, classes, margin, k);
    });
  });
  const cpu::CompactPlan plan = cpu::compact_plan(k, rows);
  int64_t* out = kept.mutable_data_ptr<int64_t>();
  cpu::compact_write(k, rows, plan, out);
  std::fill(out + plan.total(), out + rows, int64_t{-1});
  count.fill_(plan.total());
  return {keep, kept, count};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("argmax_mismatch", &argmax_mismatch_cpu);
}

}  // namespace dsampling
