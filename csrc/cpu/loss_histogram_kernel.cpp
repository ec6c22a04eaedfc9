#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <vector>

#include "common/binning.h"
#include "common/checks.h"
#include "cpu/count_bins.h"

namespace dsampling {
namespace {

// Edges in S arithmetic from the outer edges, rounded to T; returns the numpy norm_denom.
template <typename T, typename S>
S fill_edges(S first, S last, int64_t k, T* edges) {
  const binning::OuterEdges<S> outer = binning::outer_edges<S>(first, last);
  for (int64_t j = 0; j <= k; ++j) {
    edges[j] = T(binning::linspace_edge<S>(j, k, outer.first, outer.last));
  }
  bool increasing = true;
  for (int64_t j = 0; j < k; ++j) increasing &= edges[j] < edges[j + 1];
  checks::loss_histogram_edges(increasing, k, static_cast<double>(edges[0]), static_cast<double>(edges[k]));
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
    if (range.has_value()) {  // NaN and +-Inf fall outside the range: not counted, as in numpy
      const double denom = fill_edges<scalar_t, double>((*range)[0], (*range)[1], bins, e);
      cpu::count_bins<scalar_t, double, true>(data, n, e, static_cast<int32_t>(bins), denom, c);
    } else {
      // ATen's vectorised aminmax; NaN propagates into it, so one look tells finiteness.
      const auto [mn, mx] = at::aminmax(x);
      const scalar_t lo = mn.item<scalar_t>(), hi = mx.item<scalar_t>();
      TORCH_CHECK(std::isfinite(static_cast<double>(lo)) && std::isfinite(static_cast<double>(hi)),
                  "loss_histogram: values must be finite without a range, got NaN or Inf");
      const scalar_t denom = fill_edges<scalar_t, scalar_t>(lo, hi, bins, e);
      cpu::count_bins<scalar_t, scalar_t, false>(data, n, e, static_cast<int32_t>(bins), denom, c);
    }
  });
  return {counts, edges};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("loss_histogram", &loss_histogram_cpu);
}

}  // namespace dsampling
