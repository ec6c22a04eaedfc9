// Philox uniforms in bulk on the CPU: stream positions [4 * first_block, 4 * (first_block +
// blocks)) of common/philox.h. The draw is most of a selection's cost, so the loop has no
// branches or early exits and vectorises across blocks; on x86-64 Linux it is compiled for
// AVX-512, AVX2 and the baseline, and the loader picks the best the CPU has (target_clones).
#pragma once

#include <cstdint>

namespace dsampling {
namespace cpu {

void fill_uniforms(int64_t seed, int64_t offset, int64_t first_block, int64_t blocks, float* out);

// philox::element_bits(seed, offset, first + j, 0) for j in [0, count): the 64-bit word pair 0
// of blocks first .. first + count - 1, in bulk (weighted_sample's draws).
void fill_element_bits(int64_t seed, int64_t offset, int64_t first, int64_t count, uint64_t* out);

}  // namespace cpu
}  // namespace dsampling
