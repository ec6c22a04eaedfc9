// DS_CPU_CLONES: compile a CPU hot loop for AVX-512, AVX2 and the baseline; the loader picks the
// best the CPU has (GCC's target_clones, x86-64 Linux only; elsewhere one baseline copy).
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define DS_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DS_CPU_CLONES
#endif
