#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/philox.h"
#include "cpu/uniforms.h"

namespace dsampling {
namespace {

void philox_fill_uniform_cpu(const at::Tensor& out, int64_t seed, int64_t offset) {
  checks::philox_fill_uniform(out);
  TORCH_CHECK(out.is_cpu(), "philox_fill_uniform_: out must be a CPU tensor, got ", out.device());
  float* data = out.mutable_data_ptr<float>();
  const int64_t n = out.numel();
  const int64_t full_blocks = n / 4;
  at::parallel_for(0, full_blocks, 4096, [&](int64_t begin, int64_t end) {
    cpu::fill_uniforms(seed, offset, begin, end - begin, data + 4 * begin);
  });
  if (n % 4 != 0) {  // the last, partial block
    float tail[4];
    cpu::fill_uniforms(seed, offset, full_blocks, 1, tail);
    for (int64_t i = 4 * full_blocks; i < n; ++i) data[i] = tail[i - 4 * full_blocks];
  }
}

at::Tensor philox4x32_10_cpu(const at::Tensor& counter, int64_t seed) {
  checks::philox4x32_10(counter);
  const at::Tensor ctr = counter.contiguous();
  at::Tensor out = at::empty_like(ctr);
  const int64_t* in = ctr.const_data_ptr<int64_t>();
  int64_t* res = out.mutable_data_ptr<int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  at::parallel_for(0, ctr.size(0), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      philox::Block block;
      for (int w = 0; w < 4; ++w) block.v[w] = static_cast<uint32_t>(in[4 * r + w]);
      block = philox::philox4x32_10(block, static_cast<uint32_t>(key),
                                    static_cast<uint32_t>(key >> 32));
      for (int w = 0; w < 4; ++w) res[4 * r + w] = block.v[w];
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("philox_fill_uniform_", &philox_fill_uniform_cpu);
  m.impl("_philox4x32_10", &philox4x32_10_cpu);
}

}  // namespace dsampling
