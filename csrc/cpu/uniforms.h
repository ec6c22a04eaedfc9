// Philox uniforms in bulk on the CPU: stream positions [4 * first_block, 4 * (first_block +
// blocks)) of common/philox.h, written in a loop with no branches or early exits so that the
// compiler vectorises the rounds across blocks (the draw is most of a selection's cost).
#pragma once

#include <cstdint>

#include "common/philox.h"

namespace dsampling {
namespace cpu {

inline void fill_uniforms(int64_t seed, int64_t offset, int64_t first_block, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b) {
    const philox::Block r = philox::stream_block(seed, offset, static_cast<uint64_t>(first_block + b));
    out[4 * b] = philox::to_uniform(r.v[0]);
    out[4 * b + 1] = philox::to_uniform(r.v[1]);
    out[4 * b + 2] = philox::to_uniform(r.v[2]);
    out[4 * b + 3] = philox::to_uniform(r.v[3]);
  }
}

}  // namespace cpu
}  // namespace dsampling
