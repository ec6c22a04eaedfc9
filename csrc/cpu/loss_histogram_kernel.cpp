#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <vector>

#include "common/binning.h"
#include "common/checks.h"

namespace dsampling {
namespace {

constexpr int64_t kGrain = 32768;
constexpr int64_t kBlock = 256;  // values per vectorised index block
constexpr int kLanes = 4;        // sub-histograms, so consecutive increments rarely hit one counter

// One pass: min and max, and whether any value is NaN or Inf. Written so that the compiler
// vectorises it: the select keeps NaN out of min/max, and a separate flag catches NaN.
template <typename T>
void min_max(const T* x, int64_t n, T* lo, T* hi, bool* finite) {
  using W = typename Wider<T>::type;
  W gmin = std::numeric_limits<W>::infinity(), gmax = -gmin;
  bool gnan = false;
  std::mutex mu;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    W mn = std::numeric_limits<W>::infinity(), mx = -mn;
    int nan = 0;
    for (int64_t i = begin; i < end; ++i) {
      const W v = static_cast<W>(x[i]);
      nan |= v != v;
      mn = v < mn ? v : mn;
      mx = v > mx ? v : mx;
    }
    std::lock_guard<std::mutex> lock(mu);
    gmin = std::min(gmin, mn);
    gmax = std::max(gmax, mx);
    gnan |= nan != 0;
  });
  *lo = T(gmin);
  *hi = T(gmax);
  *finite = !gnan && std::isfinite(gmin) && std::isfinite(gmax);
}

// Count pass: per chunk, numpy's index guesses for a block of values (a vectorisable loop),
// then the edge correction and the increments into kLanes private sub-histograms.
// Returns false if a value is NaN or Inf.
template <typename T, typename S>
bool count_bins(const T* x, int64_t n, const T* edges, int32_t k, S denom, int64_t* counts) {
  bool all_finite = true;
  std::mutex mu;
  const auto edge = [edges](int32_t j) { return edges[j]; };
  const T first = edges[0], last = edges[k];
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> local(kLanes * k, 0);
    int32_t guess[kBlock];
    bool ok = true;
    for (int64_t base = begin; base < end; base += kBlock) {
      const int64_t m = std::min(kBlock, end - base);
      const T* v = x + base;
      for (int64_t i = 0; i < m; ++i) guess[i] = binning::scaled_index<T, S>(v[i], first, denom, k);
      for (int64_t i = 0; i < m; ++i) {
        if (!(v[i] >= first && v[i] <= last)) {  // outside the range, or NaN
          ok &= std::isfinite(static_cast<typename Wider<T>::type>(v[i]));
          continue;
        }
        ++local[(i % kLanes) * k + binning::correct_index(v[i], guess[i], edge, k)];
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    for (int64_t j = 0; j < kLanes * k; ++j) counts[j % k] += local[j];
    all_finite &= ok;
  });
  return all_finite;
}

// Edges in S arithmetic from the outer edges, rounded to T; returns the numpy norm_denom.
template <typename T, typename S>
S fill_edges(S first, S last, int64_t k, T* edges) {
  const binning::OuterEdges<S> outer = binning::outer_edges<S>(first, last);
  for (int64_t j = 0; j <= k; ++j) {
    edges[j] = T(binning::linspace_edge<S>(j, k, outer.first, outer.last));
  }
  for (int64_t j = 0; j < k; ++j) {
    TORCH_CHECK(edges[j] < edges[j + 1], "loss_histogram: bins must leave every bin a finite "
                "width, got bins=", k, " for the range [", static_cast<double>(edges[0]), ", ",
                static_cast<double>(edges[k]), "] (edges repeat in this dtype)");
  }
  return Rounded<S>::sub(outer.last, outer.first);
}

std::tuple<at::Tensor, at::Tensor> loss_histogram_cpu(const at::Tensor& values, int64_t bins,
                                                      std::optional<at::ArrayRef<double>> range) {
  checks::loss_histogram(values, bins, range);
  TORCH_CHECK(values.is_cpu(), "loss_histogram: values must be a CPU tensor, got ",
              values.device());
  const at::Tensor x = values.contiguous();
  const int64_t n = x.numel();
  at::Tensor counts = at::zeros({bins}, x.options().dtype(at::kLong));
  at::Tensor edges = at::empty({bins + 1}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "loss_histogram_cpu", [&] {
    const scalar_t* data = x.const_data_ptr<scalar_t>();
    scalar_t* e = edges.mutable_data_ptr<scalar_t>();
    int64_t* c = counts.mutable_data_ptr<int64_t>();
    bool finite;
    if (range.has_value()) {
      const double denom = fill_edges<scalar_t, double>((*range)[0], (*range)[1], bins, e);
      finite = count_bins<scalar_t, double>(data, n, e, static_cast<int32_t>(bins), denom, c);
    } else {
      scalar_t lo, hi;
      min_max(data, n, &lo, &hi, &finite);
      if (finite) {
        const scalar_t denom = fill_edges<scalar_t, scalar_t>(lo, hi, bins, e);
        count_bins<scalar_t, scalar_t>(data, n, e, static_cast<int32_t>(bins), denom, c);
      }
    }
    TORCH_CHECK(finite, "loss_histogram: values must be finite, got NaN or Inf");
  });
  return {counts, edges};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("loss_histogram", &loss_histogram_cpu);
}

}  // namespace dsampling
