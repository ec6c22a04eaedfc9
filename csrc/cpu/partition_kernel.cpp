// partition_resample and random_subset_ on the CPU: partial Fisher-Yates shuffles
// (common/philox.h), O(k) swaps.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "common/checks.h"
#include "common/philox.h"

namespace dsampling {
namespace {

void partition_resample_cpu(const at::Tensor& perm, int64_t size, int64_t k, int64_t seed, int64_t offset) {
  checks::partition_resample(perm, size, k);
  TORCH_CHECK(perm.is_cpu(), "partition_resample: perm must be a CPU tensor, got ", perm.device());
  int64_t* p = perm.mutable_data_ptr<int64_t>();
  // k random members of A = perm[:size] to its front, k random members of B = perm[size:] to
  // its front, then the two fronts trade places: |A| stays size and perm stays a permutation.
  philox::partial_shuffle(p, size, k, seed, offset, 0);
  philox::partial_shuffle(p + size, perm.numel() - size, k, seed, offset, 1);
  std::swap_ranges(p, p + k, p + size);
}

void random_subset_cpu(const at::Tensor& perm, int64_t size, int64_t seed, int64_t offset) {
  checks::random_subset(perm, size);
  TORCH_CHECK(perm.is_cpu(), "random_subset_: perm must be a CPU tensor, got ", perm.device());
  philox::partial_shuffle(perm.mutable_data_ptr<int64_t>(), perm.numel(), size, seed, offset, 0);
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("partition_resample", &partition_resample_cpu);
  m.impl("random_subset_", &random_subset_cpu);
}

}  // namespace dsampling
