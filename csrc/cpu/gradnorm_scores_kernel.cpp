// gradnorm_scores on the CPU: one pass per row block for the scores (common/gradnorm.h, rows in
// parallel), then one pass for the per-group sums of score^2 (in the chunked order of
// common/group_sums.h) and counts. float16 and bfloat16
// rows are widened to float32 a block at a time; the float32 loop is compiled for AVX-512, AVX2
// and the baseline (target_clones), so its exp vectorises where the CPU allows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/argmax.h"
#include "common/checks.h"
#include "common/gradnorm.h"
#include "common/group_sums.h"
#include "cpu/clones.h"

namespace dsampling {
namespace {

constexpr int64_t kRowBlock = 64;

// The largest value of a row, in kMaxLanes independent lanes so that the loop vectorises (the
// maximum of non-NaN values does not depend on the order; a row holding NaN scores NaN whatever
// its m is, since exp(NaN - m) and exp(z - NaN) are both NaN).
constexpr int kMaxLanes = 16;

template <typename A>
__attribute__((always_inline)) inline A row_max(const A* row, int64_t classes) {
  A lane[kMaxLanes];
  for (int t = 0; t < kMaxLanes; ++t) lane[t] = row[0];
  int64_t j = 0;
  for (; j + kMaxLanes <= classes; j += kMaxLanes) {
    for (int t = 0; t < kMaxLanes; ++t) lane[t] = row[j + t] > lane[t] ? row[j + t] : lane[t];
  }
  for (; j < classes; ++j) lane[0] = row[j] > lane[0] ? row[j] : lane[0];
  A m = lane[0];
  for (int t = 1; t < kMaxLanes; ++t) m = lane[t] > m || lane[t] != lane[t] ? lane[t] : m;
  return m;
}

// Add the terms [base, base + count) of a row to lanes 0..count-1 (a lane per term).
template <typename A, int N>
__attribute__((always_inline)) inline void add_chunk(const A* row, int64_t base, int64_t count, int64_t y, A m, A* lz,
                                                     A* lo, A* lq) {
  for (int64_t t = 0; t < (N > 0 ? N : count); ++t) {  // vectorises: lanes are independent
    const A e = gradnorm::scaled_exp(row[base + t], m);
    const A o = base + t == y ? A(0) : e;
    lz[t] = add_rn(lz[t], e);
    lo[t] = add_rn(lo[t], o);
    lq[t] = add_rn(lq[t], mul_rn(o, o));
  }
}

// Score of each row [0, rows) of a contiguous block, in the lane order of common/gradnorm.h.
// LANES: the row's lane count G when it is known at compile time (full chunks then keep the
// lane sums in registers), 0 for any G. Always inlined, so that each target_clones copy of
// score_rows_float compiles it for its ISA.
template <typename A, int LANES>
__attribute__((always_inline)) inline void score_rows(const A* z, const int64_t* labels, int64_t rows, int64_t classes, A* out) {
  const int lanes = LANES > 0 ? LANES : argmax::group_width(classes);
  for (int64_t r = 0; r < rows; ++r) {
    const A* row = z + r * classes;
    const A m = row_max(row, classes);
    A lz[argmax::kMaxGroup] = {}, lo[argmax::kMaxGroup] = {}, lq[argmax::kMaxGroup] = {};
    const int64_t y = labels[r];
    int64_t base = 0;
    for (; base + lanes <= classes; base += lanes) add_chunk<A, LANES>(row, base, lanes, y, m, lz, lo, lq);
    if (base < classes) add_chunk<A, 0>(row, base, classes - base, y, m, lz, lo, lq);
    for (int s = lanes / 2; s > 0; s >>= 1) {
      for (int t = 0; t < s; ++t) {
        lz[t] = add_rn(lz[t], lz[t + s]);
        lo[t] = add_rn(lo[t], lo[t + s]);
        lq[t] = add_rn(lq[t], lq[t + s]);
      }
    }
    out[r] = gradnorm::score(gradnorm::Sums<A>{lz[0], lo[0], lq[0]});
  }
}

// Few classes (G <= kNarrow lanes per row): a block of up to kRowBlock rows is transposed and
// scanned column by column, so that the loops run across rows and vectorise; each row's lanes
// still add its terms in the order of common/gradnorm.h.
constexpr int kNarrow = 8;

__attribute__((always_inline)) inline void score_columns(const float* z, const int64_t* labels, int64_t rows,
                                                         int64_t classes, float* col, float* out) {
  constexpr int64_t R = kRowBlock;
  const int lanes = argmax::group_width(classes);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < classes; ++j) col[j * R + r] = z[r * classes + j];
  }
  float m[R], lz[kNarrow][R] = {}, lo[kNarrow][R] = {}, lq[kNarrow][R] = {};
  int64_t y[R];
  for (int64_t r = 0; r < R; ++r) {
    y[r] = r < rows ? labels[r] : -1;
    m[r] = col[r];
  }
  for (int64_t j = 1; j < classes; ++j) {
    for (int64_t r = 0; r < R; ++r) m[r] = col[j * R + r] > m[r] ? col[j * R + r] : m[r];
  }
  for (int64_t j = 0; j < classes; ++j) {
    const int t = static_cast<int>(j & (lanes - 1));
    for (int64_t r = 0; r < R; ++r) {
      const float e = gradnorm::scaled_exp(col[j * R + r], m[r]);
      const float o = j == y[r] ? 0.0f : e;
      lz[t][r] = add_rn(lz[t][r], e);
      lo[t][r] = add_rn(lo[t][r], o);
      lq[t][r] = add_rn(lq[t][r], mul_rn(o, o));
    }
  }
  for (int s = lanes / 2; s > 0; s >>= 1) {
    for (int t = 0; t < s; ++t) {
      for (int64_t r = 0; r < R; ++r) {
        lz[t][r] = add_rn(lz[t][r], lz[t + s][r]);
        lo[t][r] = add_rn(lo[t][r], lo[t + s][r]);
        lq[t][r] = add_rn(lq[t][r], lq[t + s][r]);
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) out[r] = gradnorm::score(gradnorm::Sums<float>{lz[0][r], lo[0][r], lq[0][r]});
}

DS_CPU_CLONES void score_rows_float(const float* z, const int64_t* labels, int64_t rows, int64_t classes, float* out) {
  const int lanes = argmax::group_width(classes);
  if (lanes == argmax::kMaxGroup) {
    score_rows<float, argmax::kMaxGroup>(z, labels, rows, classes, out);
    return;
  }
  if (lanes > kNarrow) {
    score_rows<float, 0>(z, labels, rows, classes, out);
    return;
  }
  std::vector<float> col(classes * kRowBlock, 0.0f);  // rows past the last of a block stay finite
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    score_columns(z + r0 * classes, labels + r0, std::min(kRowBlock, rows - r0), classes, col.data(), out + r0);
  }
}

// Rows per task: about 2^18 logits (~0.25 ms on one core), so a training batch (1024 x 1000)
// splits over the cores as torch's own ops do: 0.46 ms on 2 idle cores against 0.9 ms on one.
// (On cores shared with other jobs, 2 threads cost up to 12 ms; so do torch's ops there.)
constexpr int64_t kTaskLogits = int64_t{1} << 18;

template <typename T, typename A>
void scores_of(const T* z, const int64_t* labels, int64_t rows, int64_t classes, A* out) {
  at::parallel_for(0, rows, std::max<int64_t>(kRowBlock, kTaskLogits / classes), [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<T, double>) {
      score_rows<double, 0>(z + begin * classes, labels + begin, end - begin, classes, out + begin);
    } else if constexpr (std::is_same_v<T, float>) {
      score_rows_float(z + begin * classes, labels + begin, end - begin, classes, out + begin);
    } else {  // float16 / bfloat16: widen a block of rows, then the float32 loop
      std::vector<float> wide(kRowBlock * classes);
      for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
        const int64_t m = std::min(kRowBlock, end - r0);
        for (int64_t i = 0; i < m * classes; ++i) wide[i] = static_cast<float>(z[r0 * classes + i]);
        score_rows_float(wide.data(), labels + r0, m, classes, out + r0);
      }
    }
  });
}

// The group sums of score^2 in the chunked order of common/group_sums.h, in one pass over the
// rows: each group's open chunk is added to its sum when it fills and, at the end, if partial.
template <typename A>
void add_in_chunk_order(const A* scores, const std::vector<int64_t>& group_of, int64_t num_groups, A* sum,
                        int64_t* count) {
  std::vector<A> chunk(num_groups, A(0));  // sum and count start at 0
  for (size_t r = 0; r < group_of.size(); ++r) {
    const int64_t k = group_of[r];
    chunk[k] = add_rn(chunk[k], mul_rn(scores[r], scores[r]));
    if (++count[k] % group_sums::kChunkRows == 0) {
      sum[k] = add_rn(sum[k], chunk[k]);
      chunk[k] = A(0);
    }
  }
  for (int64_t k = 0; k < num_groups; ++k) {
    if (count[k] % group_sums::kChunkRows != 0) sum[k] = add_rn(sum[k], chunk[k]);
  }
}

template <typename L>
std::vector<int64_t> checked_ids(const at::Tensor& t, int64_t high, const char* name, const char* range) {
  const L* p = t.const_data_ptr<L>();
  const int64_t n = t.numel();
  std::vector<int64_t> out(n);
  for (int64_t r = 0; r < n; ++r) {
    TORCH_CHECK(p[r] >= 0 && p[r] < high, "gradnorm_scores: ", name, " must be in [0, ", high, ")", range, ", got ",
                static_cast<int64_t>(p[r]), " at index ", r);
    out[r] = p[r];
  }
  return out;
}

std::vector<int64_t> ids(const at::Tensor& t, int64_t high, const char* name, const char* range) {
  const at::Tensor c = t.contiguous();
  return c.scalar_type() == at::kLong ? checked_ids<int64_t>(c, high, name, range)
                                      : checked_ids<int32_t>(c, high, name, range);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gradnorm_scores_cpu(const at::Tensor& logits, const at::Tensor& labels,
                                                                   const std::optional<at::Tensor>& groups,
                                                                   int64_t num_groups) {
  checks::gradnorm_scores(logits, labels, groups, num_groups);
  TORCH_CHECK(logits.is_cpu(), "gradnorm_scores: logits must be a CPU tensor, got ", logits.device());
  const at::Tensor z = logits.contiguous();
  const int64_t rows = z.size(0), classes = z.size(1);
  const at::ScalarType acc = z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor scores = at::empty({rows}, z.options().dtype(acc));
  at::Tensor group_sum_sq = at::zeros({num_groups}, z.options().dtype(acc));
  at::Tensor group_count = at::zeros({num_groups}, z.options().dtype(at::kLong));
  const std::vector<int64_t> y = ids(labels, classes, "labels", "");
  const std::vector<int64_t> g = groups.has_value() ? ids(*groups, num_groups, "groups", "")
                                                    : ids(labels, num_groups, "labels", " (they are the groups)");
  int64_t* count = group_count.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "gradnorm_scores_cpu", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    A* s = scores.mutable_data_ptr<A>();
    scores_of<scalar_t, A>(z.const_data_ptr<scalar_t>(), y.data(), rows, classes, s);
    add_in_chunk_order(s, g, num_groups, group_sum_sq.mutable_data_ptr<A>(), count);
  });
  return {scores, group_sum_sq, group_count};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("gradnorm_scores", &gradnorm_scores_cpu);
}

}  // namespace dsampling
