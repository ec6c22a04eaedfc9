#include "cpu/uniforms.h"

#include "common/philox.h"
#include "cpu/clones.h"

namespace dsampling {
namespace cpu {

DS_CPU_CLONES void fill_uniforms(int64_t seed, int64_t offset, int64_t first_block, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b) {
    const philox::Block r = philox::stream_block(seed, offset, static_cast<uint64_t>(first_block + b));
    out[4 * b] = philox::to_uniform(r.v[0]);
    out[4 * b + 1] = philox::to_uniform(r.v[1]);
    out[4 * b + 2] = philox::to_uniform(r.v[2]);
    out[4 * b + 3] = philox::to_uniform(r.v[3]);
  }
}

DS_CPU_CLONES void fill_element_bits(int64_t seed, int64_t offset, int64_t first, int64_t count, uint64_t* out) {
  for (int64_t j = 0; j < count; ++j) {
    const philox::Block r = philox::stream_block(seed, offset, static_cast<uint64_t>(first + j));
    out[j] = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  }
}

}  // namespace cpu
}  // namespace dsampling
