// partition_resample and random_subset_ on the CPU: partial Fisher-Yates shuffles with the
// draws of common/philox.h, O(k) swaps.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "common/checks.h"
#include "common/philox.h"

namespace dsampling {
namespace {

constexpr int64_t kDrawBlock = 2048;

// The partial Fisher-Yates shuffle of common/philox.h: the random bits of a block of steps are
// drawn first, in a loop the compiler vectorises (they do not depend on the swaps), then the
// swaps run in order.
void partial_shuffle_cpu(int64_t* data, int64_t n, int64_t k, int64_t seed, int64_t offset, int pair) {
  uint64_t bits[kDrawBlock];
  for (int64_t base = 0; base < k; base += kDrawBlock) {
    const int64_t m = std::min(kDrawBlock, k - base);
    for (int64_t t = 0; t < m; ++t) bits[t] = philox::element_bits(seed, offset, static_cast<uint64_t>(base + t), pair);
    for (int64_t t = 0; t < m; ++t) {
      const int64_t i = base + t;
      std::swap(data[i], data[philox::swap_target(bits[t], i, n)]);
    }
  }
}

void partition_resample_cpu(const at::Tensor& perm, int64_t size, int64_t k, int64_t seed, int64_t offset) {
  checks::partition_resample(perm, size, k);
  TORCH_CHECK(perm.is_cpu(), "partition_resample: perm must be a CPU tensor, got ", perm.device());
  int64_t* p = perm.mutable_data_ptr<int64_t>();
  // k random members of A = perm[:size] to its front, k random members of B = perm[size:] to
  // its front, then the two fronts trade places: |A| stays size and perm stays a permutation.
  partial_shuffle_cpu(p, size, k, seed, offset, 0);
  partial_shuffle_cpu(p + size, perm.numel() - size, k, seed, offset, 1);
  std::swap_ranges(p, p + k, p + size);
}

void random_subset_cpu(const at::Tensor& perm, int64_t size, int64_t seed, int64_t offset) {
  checks::random_subset(perm, size);
  TORCH_CHECK(perm.is_cpu(), "random_subset_: perm must be a CPU tensor, got ", perm.device());
  partial_shuffle_cpu(perm.mutable_data_ptr<int64_t>(), perm.numel(), size, seed, offset, 0);
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("partition_resample", &partition_resample_cpu);
  m.impl("random_subset_", &random_subset_cpu);
}

}  // namespace dsampling
