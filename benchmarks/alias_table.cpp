// The alternative weighted_sample did not take: Vose's alias table, timed for the README's
// comparison (one thread, the same Philox bits per draw as the op):
//   g++ -O3 -march=native -std=c++20 -I csrc benchmarks/alias_table.cpp -o /tmp/alias && /tmp/alias
// It prints the build and draw times at N = 5e4, 1.28e6, 1e7, 1e8 with 10^6 draws; compare with
//   weighted_sample(w, 0) (build) and weighted_sample(w, 10**6) on one thread.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "common/philox.h"

using namespace dsampling;

int main() {
  for (int64_t n : {50'000LL, 1'281'167LL, 10'000'000LL, 100'000'000LL}) {
    std::vector<float> w(n);
    std::mt19937_64 rng(n);
    std::exponential_distribution<float> ex(1.0f);
    for (auto& v : w) v = ex(rng);
    const auto t0 = std::chrono::steady_clock::now();
    // Vose: scaled probabilities n w_i / W, a small and a large worklist, one pass pairing them.
    double total = 0;
    for (float v : w) total += v;
    std::vector<double> prob(n);
    std::vector<int64_t> alias(n), small, large;
    small.reserve(n);
    large.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      prob[i] = w[i] * (n / total);
      (prob[i] < 1.0 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      const int64_t s = small.back(), l = large.back();
      small.pop_back();
      alias[s] = l;
      prob[l] = (prob[l] + prob[s]) - 1.0;
      if (prob[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (int64_t i : large) prob[i] = 1.0;
    for (int64_t i : small) prob[i] = 1.0;  // rounding leftovers
    const auto t1 = std::chrono::steady_clock::now();
    const int64_t draws = 1'000'000;
    std::vector<int64_t> out(draws);
    for (int64_t j = 0; j < draws; ++j) {
      const philox::Block b = philox::stream_block(1, 0, static_cast<uint64_t>(j));  // column, then coin
      const uint64_t bits = (static_cast<uint64_t>(b.v[0]) << 32) | b.v[1];
      const int64_t col = static_cast<int64_t>(philox::scale_below(bits, static_cast<uint64_t>(n)));
      const double coin = static_cast<double>(((static_cast<uint64_t>(b.v[2]) << 32) | b.v[3]) >> 11) * 0x1p-53;
      out[j] = coin < prob[col] ? col : alias[col];
    }
    const auto t2 = std::chrono::steady_clock::now();
    int64_t check = 0;
    for (int64_t v : out) check += v;
    std::printf("N=%lld  alias build %8.1f ms  10^6 draws %7.1f ms  (checksum %lld)\n", static_cast<long long>(n),
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count(), static_cast<long long>(check % 1000));
  }
}
