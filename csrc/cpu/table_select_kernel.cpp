// table_select on the CPU: the rule's statistic over the scored entries, one decision pass
// (common/table.h) writing a keep code per index, then the ordered compaction of the kept
// indices and their weights.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/binning.h"
#include "common/checks.h"
#include "common/philox.h"
#include "common/selection.h"
#include "common/table.h"
#include "cpu/compact.h"
#include "cpu/uniforms.h"

namespace dsampling {
namespace {

constexpr int64_t kGrain = 1 << 16;

constexpr int64_t kDrawBlocks = 256;  // Philox blocks drawn ahead of the decisions: 1024 uniforms

// Writes code[i] for every index, as table::keep_code says. The uniforms of a run of indices are
// drawn first, in a loop that vectorises; the codes go to a local buffer first, so that their
// byte stores do not make the compiler reload everything the chance reads. `chance` is called
// for forced indices too (its verdict is then ignored), so it must be safe on any index.
template <typename ChanceFn>
void decide(int64_t n, const int32_t* seen, int64_t epoch, int64_t staleness, int64_t seed, int64_t offset,
            ChanceFn chance, uint8_t* code) {
  at::parallel_for(0, (n + 3) / 4, kGrain / 4, [=](int64_t begin, int64_t end) {
    float u[4 * kDrawBlocks];
    uint8_t out[4 * kDrawBlocks];
    for (int64_t b0 = begin; b0 < end; b0 += kDrawBlocks) {
      const int64_t blocks = std::min(kDrawBlocks, end - b0);
      cpu::fill_uniforms(seed, offset, b0, blocks, u);
      const int64_t first = 4 * b0, m = std::min(4 * blocks, n - first);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t i = first + j;
        out[j] = table::keep_code(table::forced(seen[i], epoch, staleness), chance(i), u[j]);
      }
      std::memcpy(code + first, out, m);
    }
  });
}

// The scored values (seen_epoch >= 0) in index order, as float64, and their indices.
struct Scored {
  at::Tensor values;
  std::vector<int64_t> where;
};

template <typename T>
Scored scored_values(const T* s, const int32_t* seen, int64_t n) {
  const std::vector<uint8_t> flags = [&] {
    std::vector<uint8_t> f(n);
    at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) f[i] = seen[i] >= 0;
    });
    return f;
  }();
  const cpu::CompactPlan plan = cpu::compact_plan(flags.data(), n);
  std::vector<int64_t> where(plan.total());
  cpu::compact_write(flags.data(), n, plan, where.data());
  at::Tensor out = at::empty({plan.total()}, at::kDouble);
  double* o = out.mutable_data_ptr<double>();
  at::parallel_for(0, plan.total(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) o[j] = static_cast<double>(s[where[j]]);
  });
  return {out, std::move(where)};
}

// Mean of the scored values in the tile/lane order of common/table.h; NaN when none.
template <typename T>
double ordered_mean(const T* s, const int32_t* seen, int64_t n) {
  const int64_t tiles = (n + table::kTile - 1) / table::kTile;
  std::vector<double> tile_sum(tiles);
  std::vector<int64_t> tile_count(tiles);
  at::parallel_for(0, tiles, kGrain / table::kTile, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t base = t * table::kTile, m = std::min(table::kTile, n - base);
      tile_sum[t] = selection::lane_tree_sum(m, [&](int64_t j) {
        return seen[base + j] >= 0 ? static_cast<double>(s[base + j]) : 0.0;
      });
      int64_t c = 0;
      for (int64_t j = 0; j < m; ++j) c += seen[base + j] >= 0;
      tile_count[t] = c;
    }
  });
  int64_t count = 0;
  for (int64_t c : tile_count) count += c;
  const double sum = selection::lane_tree_sum(tiles, [&](int64_t t) { return tile_sum[t]; });
  return count > 0 ? div_rn(sum, static_cast<double>(count)) : NAN;
}

using HistogramFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, std::optional<at::ArrayRef<double>>);

std::tuple<at::Tensor, at::Tensor> table_select_cpu(const at::Tensor& scores, const at::Tensor& seen_epoch, int64_t epoch,
                                                    int64_t rule, double prune, int64_t staleness, int64_t bin_rule,
                                                    int64_t bins, double threshold, double beta, bool reweight,
                                                    int64_t seed, int64_t offset) {
  checks::table_select(scores, seen_epoch, epoch, rule, prune, staleness, bin_rule, bins, threshold, beta, reweight);
  TORCH_CHECK(scores.is_cpu(), "table_select: scores must be a CPU tensor, got ", scores.device());
  const int64_t n = scores.numel();
  const int32_t* seen = seen_epoch.const_data_ptr<int32_t>();
  std::vector<uint8_t> code(n, table::kKept);
  const double q_candidate = 1.0 - prune;

  if (rule == table::kMismatch) {
    const int8_t* right = scores.const_data_ptr<int8_t>();
    // Right (1) is a candidate; wrong (0) and unknown (-1) are always kept.
    decide(n, seen, epoch, staleness, seed, offset,
           [=](int64_t i) { return table::Chance{right[i] > 0, q_candidate}; }, code.data());
  } else {
    AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "table_select_cpu", [&] {
      const scalar_t* s = scores.const_data_ptr<scalar_t>();
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        int bad = 0;  // one branch-free scan (x - x is 0 only for finite x); the error names the first
        for (int64_t i = b; i < e; ++i) bad |= static_cast<int>(seen[i] >= 0) & static_cast<int>(!(s[i] - s[i] == 0));
        for (int64_t i = b; bad && i < e; ++i) {
          TORCH_CHECK(seen[i] < 0 || std::isfinite(static_cast<double>(s[i])), "table_select: scores must be finite ",
                      "where seen_epoch >= 0, got ", static_cast<double>(s[i]), " at index ", i);
        }
      });
      if (rule == table::kMean) {
        const double mean = ordered_mean(s, seen, n);
        decide(n, seen, epoch, staleness, seed, offset,
               [=](int64_t i) { return table::Chance{static_cast<double>(s[i]) < mean, q_candidate}; }, code.data());
      } else if (rule == table::kPmf) {
        // numpy.histogram of the scored values (float64) through the loss_histogram op; a
        // candidate's bin holds more than `threshold` of them.
        const at::Tensor values = scored_values(s, seen, n).values;
        const int64_t scored = values.numel();
        std::vector<uint8_t> dense;
        std::vector<double> edge_values;
        int32_t k = 0;
        if (scored > 0) {
          k = static_cast<int32_t>(binning::bin_count(bin_rule, scored, bins));
          static const auto histogram = c10::Dispatcher::singleton()
                                            .findSchemaOrThrow("dsampling::loss_histogram", "")
                                            .typed<HistogramFn>();
          const auto [counts, edges] = histogram.call(values, k, std::nullopt);
          const int64_t* c = counts.const_data_ptr<int64_t>();
          dense.resize(k);
          for (int32_t j = 0; j < k; ++j) {
            dense[j] = div_rn(static_cast<double>(c[j]), static_cast<double>(scored)) > threshold;
          }
          edge_values.assign(edges.const_data_ptr<double>(), edges.const_data_ptr<double>() + k + 1);
        }
        if (scored > 0) {  // else every index is forced and keeps the code decide never changes
          const double* e = edge_values.data();
          const uint8_t* is_dense = dense.data();
          const double denom = sub_rn(e[k], e[0]);
          decide(n, seen, epoch, staleness, seed, offset, [=](int64_t i) {
            const auto edge = [e](int32_t j) { return e[j]; };
            const int32_t b = binning::bin_index<double, double>(static_cast<double>(s[i]), edge, k, denom);
            return table::Chance{b >= 0 && is_dense[b], q_candidate};
          }, code.data());
        }
      } else {
        // Selective-Backprop's percentile among the scored values, raised to beta: the sort
        // gives each run of equal values its left = #(< v) and right = #(<= v).
        const Scored scored_set = scored_values(s, seen, n);
        const int64_t scored = scored_set.values.numel();
        const std::vector<int64_t>& where = scored_set.where;
        const auto [sorted, order] = at::sort(scored_set.values);
        std::vector<double> q(n, 1.0);
        const double* v = sorted.const_data_ptr<double>();
        const int64_t* o = order.const_data_ptr<int64_t>();
        for (int64_t left = 0, right; left < scored; left = right) {
          for (right = left + 1; right < scored && v[right] == v[left]; ++right) {
          }
          const double p = selection::power(selection::percentile(left, right, scored), beta);
          for (int64_t j = left; j < right; ++j) q[where[o[j]]] = p;
        }
        const double* qp = q.data();
        decide(n, seen, epoch, staleness, seed, offset, [=](int64_t i) { return table::Chance{true, qp[i]}; },
               code.data());
      }
    });
  }

  const cpu::CompactPlan plan = cpu::compact_plan(code.data(), n);
  at::Tensor indices = at::empty({plan.total()}, scores.options().dtype(at::kLong));
  at::Tensor weights = at::empty({plan.total()}, scores.options().dtype(at::kFloat));
  int64_t* ip = indices.mutable_data_ptr<int64_t>();
  float* wp = weights.mutable_data_ptr<float>();
  // By code: kDropped never appears here, kKept weighs 1, kKeptCandidate 1/q (a lookup, no branch).
  const float by_code[3] = {0.0f, 1.0f, reweight ? static_cast<float>(1.0 / q_candidate) : 1.0f};
  cpu::compact_write(code.data(), n, plan, ip, by_code, wp);
  return {indices, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("table_select", &table_select_cpu);
}

}  // namespace dsampling
