// Philox4x32-10 counter-based RNG (Salmon et al., SC'11; the generator of Random123 and cuRAND).
//
// Every random number in dsampling_ext is a pure function of (seed, offset, stream position m):
//   block  = philox4x32_10(counter = {m/4 lo, m/4 hi, offset lo, offset hi}, key = {seed lo, seed hi})
//   u32[m] = block[m % 4]
// so the CPU and CUDA kernels draw the same numbers for the same element, whatever the thread layout.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace dsampling {
namespace philox {

struct Block {
  uint32_t v[4];
};

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

DS_INLINE uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

DS_INLINE Block philox4x32_10(Block ctr, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(kMul0, ctr.v[0], &hi0);
    const uint32_t lo1 = mulhilo(kMul1, ctr.v[2], &hi1);
    ctr = Block{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The block that holds stream positions [4*block_index, 4*block_index + 4).
DS_INLINE Block stream_block(int64_t seed, int64_t offset, uint64_t block_index) {
  const uint64_t s = static_cast<uint64_t>(seed);
  const uint64_t o = static_cast<uint64_t>(offset);
  const Block ctr{{static_cast<uint32_t>(block_index), static_cast<uint32_t>(block_index >> 32),
                   static_cast<uint32_t>(o), static_cast<uint32_t>(o >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32));
}

// Top 24 bits of a word as a float32 in [0, 1): exact, so both twins compare equal bit for bit.
DS_INLINE float to_uniform(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

// Uniform number `draw` (0..3) of element i: stream position 4*i + draw, i.e. word `draw` of block i.
// Kernels that need up to four numbers per element use this; philox_uniform's element i is
// stream position i.
DS_INLINE float element_uniform(int64_t seed, int64_t offset, uint64_t i, int draw) {
  return to_uniform(stream_block(seed, offset, i).v[draw]);
}

// A uniform integer in [0, m) for element i: scale_below(element_bits(...), m), the 64-bit word
// pair `pair` (0: words 0-1, 1: words 2-3) of block i scaled by a 64x64 -> high-64 multiply (Lemire). The bias is below
// m / 2^64, and every m up to 2^63 is reachable (a float draw would stop at 2^24).
DS_INLINE uint64_t element_bits(int64_t seed, int64_t offset, uint64_t i, int pair) {
  const Block b = stream_block(seed, offset, i);
  return (static_cast<uint64_t>(b.v[2 * pair]) << 32) | b.v[2 * pair + 1];
}

DS_INLINE uint64_t scale_below(uint64_t bits, uint64_t m) {
#ifdef __CUDA_ARCH__
  return __umul64hi(bits, m);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * m) >> 64);
#endif
}

// Step i of a partial Fisher-Yates shuffle of data[0, n) swaps data[i] with data[swap_target],
// a uniform position in [i, n) from the bits element_bits(seed, offset, i, pair). The targets do
// not depend on the swaps, so both twins draw them first, in bulk, and then swap in order: the
// same swaps on the CPU and CUDA. Afterwards data[0, k) holds k distinct elements chosen
// uniformly at random, in random order (k = n shuffles everything).
DS_INLINE int64_t swap_target(uint64_t bits, int64_t i, int64_t n) {
  return i + static_cast<int64_t>(scale_below(bits, static_cast<uint64_t>(n - i)));
}

}  // namespace philox
}  // namespace dsampling
