// The CPU backend's hot float32 kernels, compiled for several instruction sets in every
// translation unit and chosen at run time from what the processor supports:
//   avx512     AVX-512F (16 floats a register), fused multiply-add
//   avx2_fma   AVX2 + FMA (8 floats)
//   generic    what the translation unit is compiled for (SSE2 on a plain x86-64 build)
// So a program built with plain Release flags (no -march) runs the AVX-512 or AVX2 kernels on a
// processor that has them. The variants are template instances with a target attribute
// (GCC, Clang); with another compiler, or off x86, only `generic` exists and is portable C++.
// SOUNDNET_CPU_KERNELS=generic|avx2_fma|avx512 in the environment (or set_cpu_kernels) forces a
// variant the processor supports (tests compare them).
//
//   sgemm           C (m, n) = or += A (m, k) B (k, n), any strides: packed panels, register-
//                   blocked micro-kernels (MR x NR accumulators), or dot products when n <= 8
//   direct_conv1    the one-input-channel convolution of conv1 (see ops<cpu, float>)
//
// Each variant sums every output in a fixed order (k ascending in blocks of kc), so results do
// not depend on the thread count; they differ between variants only by rounding (FMA or not).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/backend/cpu/kernels.hpp"
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../../core/abi.hpp"
#include "../../core/error.hpp"

// SOUNDNET_PORTABLE_KERNELS: build only the portable C++ variant, as a compiler without GCC's
// vector extensions and target attributes would (tests/CMakeLists.txt: test_ops_portable).
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(SOUNDNET_PORTABLE_KERNELS)
#define SOUNDNET_CPU_DISPATCH 1
#define SOUNDNET_TARGET(isa) __attribute__((target(isa)))
#else
#define SOUNDNET_CPU_DISPATCH 0
#define SOUNDNET_TARGET(isa)
#endif
#if (defined(__GNUC__) || defined(__clang__)) && !defined(SOUNDNET_PORTABLE_KERNELS)
#define SOUNDNET_VECTOR_EXTENSIONS 1
#else
#define SOUNDNET_VECTOR_EXTENSIONS 0
#endif

namespace soundnet {
SOUNDNET_ABI_BEGIN

/// The kernel variants of the CPU backend.
enum class cpu_kernels { generic, avx2_fma, avx512 };

inline const char* name(cpu_kernels k) {
  switch (k) {
    case cpu_kernels::avx512: return "avx512";
    case cpu_kernels::avx2_fma: return "avx2_fma";
    default: return "generic";
  }
}

/// True when this processor (and this build) can run variant k.
inline bool cpu_supports(cpu_kernels k) {
#if SOUNDNET_CPU_DISPATCH
  __builtin_cpu_init();
  switch (k) {
    case cpu_kernels::avx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case cpu_kernels::avx2_fma: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
#else
  return k == cpu_kernels::generic;
#endif
}

namespace detail {
inline std::atomic<int>& forced_kernels() {
  static std::atomic<int> forced{-1};
  return forced;
}

inline cpu_kernels detect_kernels() {
  if (const char* env = std::getenv("SOUNDNET_CPU_KERNELS"); env && *env) {
    const std::string want = env;
    for (auto k : {cpu_kernels::generic, cpu_kernels::avx2_fma, cpu_kernels::avx512})
      if (want == name(k)) {
        if (!cpu_supports(k))
          throw error("SOUNDNET_CPU_KERNELS=" + want + ": this processor (or this build) cannot run it");
        return k;
      }
    throw error("SOUNDNET_CPU_KERNELS must be generic, avx2_fma or avx512; got '" + want + "'");
  }
  if (cpu_supports(cpu_kernels::avx512)) return cpu_kernels::avx512;
  if (cpu_supports(cpu_kernels::avx2_fma)) return cpu_kernels::avx2_fma;
  return cpu_kernels::generic;
}
}  // namespace detail

/// The variant the CPU kernels use: the best this processor supports, unless forced.
inline cpu_kernels active_cpu_kernels() {
  const int forced = detail::forced_kernels().load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<cpu_kernels>(forced);
  static const cpu_kernels detected = detail::detect_kernels();
  return detected;
}

/// The variant this translation unit's own code (Eigen's templates included) is compiled for.
constexpr cpu_kernels translation_unit_kernels() {
#if defined(__AVX512F__) && defined(__FMA__)
  return cpu_kernels::avx512;
#elif defined(__AVX2__) && defined(__FMA__)
  return cpu_kernels::avx2_fma;
#else
  return cpu_kernels::generic;
#endif
}

/// Forces variant k (for tests and comparisons); throws soundnet::error when the processor
/// cannot run it.
inline void set_cpu_kernels(cpu_kernels k) {
  if (!cpu_supports(k)) throw error(std::string("this processor cannot run the ") + name(k) + " kernels");
  detail::forced_kernels().store(static_cast<int>(k), std::memory_order_relaxed);
}

namespace kernels {

/// A strided view of a matrix: element (r, c) at data[r * rs + c * cs].
struct strided {
  const float* data;
  long rs, cs;
  float operator()(long r, long c) const { return data[r * rs + c * cs]; }
};

// ---- packing (plain C++: memory-bound) -----------------------------------------------------

// Rows [i0, i0 + mr) of A, columns [p0, p0 + kc), as MR-row slivers: out[s][p][r], zero rows past m.
template <int MR>
inline void pack_a(const strided& A, long i0, long mc, long p0, long kc, float* out) {
  for (long s = 0; s < mc; s += MR) {
    const long rows = std::min<long>(MR, mc - s);
    for (long p = 0; p < kc; ++p) {
      float* o = out + (s / MR) * kc * MR + p * MR;
      long r = 0;
      for (; r < rows; ++r) o[r] = A(i0 + s + r, p0 + p);
      for (; r < MR; ++r) o[r] = 0.0f;
    }
  }
}

// Columns [j0, j0 + nc) of B, rows [p0, p0 + kc), as NR-column slivers: out[t][p][c], zero past n.
template <int NR>
inline void pack_b(const strided& B, long p0, long kc, long j0, long nc, float* out) {
  for (long t = 0; t < nc; t += NR) {
    const long cols = std::min<long>(NR, nc - t);
    float* base = out + (t / NR) * kc * NR;
    if (B.cs == 1) {
      for (long p = 0; p < kc; ++p) {
        float* o = base + p * NR;
        std::memcpy(o, B.data + (p0 + p) * B.rs + (j0 + t), sizeof(float) * static_cast<std::size_t>(cols));
        for (long c = cols; c < NR; ++c) o[c] = 0.0f;
      }
    } else if (B.rs == 1) {  // B transposed in memory: column j contiguous along p
      for (long c = 0; c < NR; ++c) {
        if (c < cols) {
          const float* col = B.data + (j0 + t + c) * B.cs + p0;
          for (long p = 0; p < kc; ++p) base[p * NR + c] = col[p];
        } else {
          for (long p = 0; p < kc; ++p) base[p * NR + c] = 0.0f;
        }
      }
    } else {
      for (long p = 0; p < kc; ++p) {
        float* o = base + p * NR;
        long c = 0;
        for (; c < cols; ++c) o[c] = B(p0 + p, j0 + t + c);
        for (; c < NR; ++c) o[c] = 0.0f;
      }
    }
  }
}

// ---- micro-kernels: MR x NR accumulators over kc packed steps ----------------------------

/// What a kernel does to an output row before storing it (the inference block's batch norm and
/// ReLU, or a convolution's bias): y = relu?(y * scale[r] + shift[r]); a null scale means 1, a
/// null shift 0. Pointers start at the tile's first row.
struct row_epilogue {
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool relu = false;
  row_epilogue rows_from(long r) const { return {scale ? scale + r : nullptr, shift ? shift + r : nullptr, relu}; }
  float apply(float v, long r) const {
    if (scale) v *= scale[r];
    if (shift) v += shift[r];
    return relu ? (v > 0.0f ? v : 0.0f) : v;
  }
};

// acc (MR x NR) = sum_p a[p][r] * b[p][c]; then C (+)= acc on the valid mr x nr part, finished
// by *ep (when not null) on the way out.
#if SOUNDNET_VECTOR_EXTENSIONS
#define SOUNDNET_MICRO_KERNEL(NAME, ATTR, LANES, MR, NV)                                               \
  ATTR inline void NAME(long kc, const float* a, const float* b, float* c, long ldc, long mr, long nr, \
                        bool accumulate, const row_epilogue* ep) {                                    \
    typedef float vec __attribute__((vector_size(LANES * sizeof(float))));                            \
    typedef int ivec __attribute__((vector_size(LANES * sizeof(int))));                               \
    vec acc[MR][NV];                                                                                   \
    for (int r = 0; r < MR; ++r)                                                                       \
      for (int v = 0; v < NV; ++v) acc[r][v] = vec{} ;                                                 \
    for (long p = 0; p < kc; ++p, a += MR, b += LANES * NV) {                                          \
      vec bv[NV];                                                                                      \
      for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + v * LANES, sizeof(vec));                   \
      for (int r = 0; r < MR; ++r) {                                                                   \
        const float ar = a[r];                                                                         \
        for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];                                          \
      }                                                                                                \
    }                                                                                                  \
    if (mr == MR && nr == LANES * NV) {                                                                \
      for (int r = 0; r < MR; ++r) {                                                                   \
        const float sc = ep && ep->scale ? ep->scale[r] : 1.0f, sh = ep && ep->shift ? ep->shift[r] : 0.0f; \
        for (int v = 0; v < NV; ++v) {                                                                 \
          float* dst = c + r * ldc + v * LANES;                                                        \
          if (accumulate) {                                                                            \
            vec old;                                                                                   \
            std::memcpy(&old, dst, sizeof(vec));                                                       \
            acc[r][v] += old;                                                                          \
          }                                                                                            \
          if (ep) {                                                                                    \
            if (ep->scale) acc[r][v] *= sc;                                                            \
            if (ep->shift) acc[r][v] += sh;                                                            \
            if (ep->relu) acc[r][v] = (vec)((ivec)acc[r][v] & (ivec)(acc[r][v] > vec{}));              \
          }                                                                                            \
          std::memcpy(dst, &acc[r][v], sizeof(vec));                                                   \
        }                                                                                              \
      }                                                                                                \
    } else {                                                                                           \
      float tile[MR][LANES * NV];                                                                      \
      std::memcpy(tile, acc, sizeof tile);                                                             \
      for (long r = 0; r < mr; ++r)                                                                    \
        for (long j = 0; j < nr; ++j) {                                                                \
          float v = accumulate ? c[r * ldc + j] + tile[r][j] : tile[r][j];                             \
          c[r * ldc + j] = ep ? ep->apply(v, r) : v;                                                   \
        }                                                                                              \
    }                                                                                                  \
  }
SOUNDNET_MICRO_KERNEL(micro_generic, , 4, 4, 2)
#if SOUNDNET_CPU_DISPATCH
SOUNDNET_MICRO_KERNEL(micro_avx2, SOUNDNET_TARGET("avx2,fma"), 8, 6, 2)
SOUNDNET_MICRO_KERNEL(micro_avx512, SOUNDNET_TARGET("avx512f,fma"), 16, 8, 2)
SOUNDNET_MICRO_KERNEL(micro_avx512_narrow, SOUNDNET_TARGET("avx512f,fma"), 16, 12, 1)
#endif
#undef SOUNDNET_MICRO_KERNEL
#else
inline void micro_generic(long kc, const float* a, const float* b, float* c, long ldc, long mr, long nr,
                          bool accumulate, const row_epilogue* ep) {
  float acc[4][8] = {};
  for (long p = 0; p < kc; ++p, a += 4, b += 8)
    for (int r = 0; r < 4; ++r)
      for (int j = 0; j < 8; ++j) acc[r][j] += a[r] * b[j];
  for (long r = 0; r < mr; ++r)
    for (long j = 0; j < nr; ++j) {
      const float v = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
      c[r * ldc + j] = ep ? ep->apply(v, r) : v;
    }
}
#endif

// Dot products for few columns (n <= 8): C(i, j) (+)= sum_p A(i, p) Bt(j, p), with A's rows and
// Bt's rows contiguous; 2 rows of A at a time, LANES-wide partial sums reduced at the end.
#if SOUNDNET_VECTOR_EXTENSIONS
#define SOUNDNET_DOT_KERNEL(NAME, ATTR, LANES)                                                          \
  ATTR inline void NAME(long rows, long n, long k, const float* a, long lda, const float* bt, float* c, \
                        long ldc, bool accumulate) {                                                    \
    typedef float vec __attribute__((vector_size(LANES * sizeof(float))));                             \
    const long kv = k / LANES * LANES;                                                                  \
    for (long i = 0; i < rows; i += 2) {                                                                \
      const long nrow = std::min<long>(2, rows - i);                                                    \
      vec acc[2][8];                                                                                    \
      for (int r = 0; r < 2; ++r)                                                                       \
        for (int j = 0; j < 8; ++j) acc[r][j] = vec{};                                                  \
      const float* a0 = a + i * lda;                                                                    \
      const float* a1 = a + (i + nrow - 1) * lda;                                                       \
      for (long p = 0; p < kv; p += LANES) {                                                            \
        vec x0, x1;                                                                                     \
        std::memcpy(&x0, a0 + p, sizeof(vec));                                                          \
        std::memcpy(&x1, a1 + p, sizeof(vec));                                                          \
        for (long j = 0; j < n; ++j) {                                                                  \
          vec y;                                                                                        \
          std::memcpy(&y, bt + j * k + p, sizeof(vec));                                                 \
          acc[0][j] += x0 * y;                                                                          \
          acc[1][j] += x1 * y;                                                                          \
        }                                                                                               \
      }                                                                                                 \
      for (long r = 0; r < nrow; ++r)                                                                   \
        for (long j = 0; j < n; ++j) {                                                                  \
          float lanes[LANES];                                                                           \
          std::memcpy(lanes, &acc[r][j], sizeof lanes);                                                 \
          float s = 0;                                                                                  \
          for (int l = 0; l < LANES; ++l) s += lanes[l];                                                \
          const float* ar = a + (i + r) * lda;                                                          \
          for (long p = kv; p < k; ++p) s += ar[p] * bt[j * k + p];                                     \
          c[(i + r) * ldc + j] = accumulate ? c[(i + r) * ldc + j] + s : s;                             \
        }                                                                                               \
    }                                                                                                   \
  }
SOUNDNET_DOT_KERNEL(dot_generic, , 4)
#if SOUNDNET_CPU_DISPATCH
SOUNDNET_DOT_KERNEL(dot_avx2, SOUNDNET_TARGET("avx2,fma"), 8)
SOUNDNET_DOT_KERNEL(dot_avx512, SOUNDNET_TARGET("avx512f,fma"), 16)
#endif
#undef SOUNDNET_DOT_KERNEL
#else
inline void dot_generic(long rows, long n, long k, const float* a, long lda, const float* bt, float* c, long ldc,
                        bool accumulate) {
  for (long i = 0; i < rows; ++i)
    for (long j = 0; j < n; ++j) {
      float s = 0;
      for (long p = 0; p < k; ++p) s += a[i * lda + p] * bt[j * k + p];
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + s : s;
    }
}
#endif

/// Scratch floats sgemm needs for (m, n, k).
inline long sgemm_scratch(long m, long n, long k) {
  (void)m;
  constexpr long kc = 256, mc = 96, nc = 512;
  return mc * kc + std::max(std::min(nc, (n + 31) / 32 * 32) * std::min(kc, k), n * k) + 64;
}

using micro_kernel = void (*)(long, const float*, const float*, float*, long, long, long, bool, const row_epilogue*);

template <int MR, int NR>
inline void sgemm_blocked(long m, long n, long k, const strided& A, const strided& B, float* C, long ldc,
                          bool accumulate, float* scratch, micro_kernel micro, const row_epilogue* ep) {
  constexpr long kc_max = 256, mc_max = 96 / MR * MR, nc_max = 512 / NR * NR;
  float* ap = scratch;
  float* bp = scratch + mc_max * kc_max;
  for (long j0 = 0; j0 < n; j0 += nc_max) {
    const long nc = std::min(nc_max, n - j0);
    for (long p0 = 0; p0 < k; p0 += kc_max) {
      const long kc = std::min(kc_max, k - p0);
      const bool acc = accumulate || p0 > 0, last = p0 + kc >= k;
      pack_b<NR>(B, p0, kc, j0, nc, bp);
      for (long i0 = 0; i0 < m; i0 += mc_max) {
        const long mc = std::min(mc_max, m - i0);
        pack_a<MR>(A, i0, mc, p0, kc, ap);
        for (long t = 0; t < nc; t += NR)
          for (long s = 0; s < mc; s += MR) {
            const row_epilogue rows = ep && last ? ep->rows_from(i0 + s) : row_epilogue{};
            micro(kc, ap + (s / MR) * kc * MR, bp + (t / NR) * kc * NR, C + (i0 + s) * ldc + j0 + t, ldc,
                  std::min<long>(MR, mc - s), std::min<long>(NR, nc - t), acc, ep && last ? &rows : nullptr);
          }
      }
    }
  }
}

/// C (m x n, rows ldc apart) = A B, or C += A B with `accumulate`; A (m x k) and B (k x n) are
/// strided views; `ep` (optional) finishes each row of C. Single-threaded (callers parallelise
/// over tiles); `scratch`: sgemm_scratch floats. The variant is active_cpu_kernels().
/// `shape_n`: the column count of the whole product this call is a tile of (default n): the
/// kernel is chosen by it, so every element is summed the same way (k ascending) whatever the
/// tiling, and tiles may follow the thread count.
inline void sgemm(long m, long n, long k, const strided& A, const strided& B, float* C, long ldc, bool accumulate,
                  float* scratch, long shape_n = 0, const row_epilogue* ep = nullptr) {
  if (shape_n <= 0) shape_n = n;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (long i = 0; i < m; ++i)
      for (long j = 0; j < n; ++j) {
        const float v = accumulate ? C[i * ldc + j] : 0.0f;
        C[i * ldc + j] = ep ? ep->apply(v, i) : v;
      }
    return;
  }
  const cpu_kernels variant = active_cpu_kernels();
  if (shape_n <= 8 && A.cs == 1) {  // few columns: dot products along k (Bt: B transposed, rows contiguous)
    float* bt = scratch;
    for (long j = 0; j < n; ++j)
      for (long p = 0; p < k; ++p) bt[j * k + p] = B(p, j);
#if SOUNDNET_CPU_DISPATCH
    if (variant == cpu_kernels::avx512) dot_avx512(m, n, k, A.data, A.rs, bt, C, ldc, accumulate);
    else if (variant == cpu_kernels::avx2_fma) dot_avx2(m, n, k, A.data, A.rs, bt, C, ldc, accumulate);
    else
#endif
      dot_generic(m, n, k, A.data, A.rs, bt, C, ldc, accumulate);
    if (ep)
      for (long i = 0; i < m; ++i)
        for (long j = 0; j < n; ++j) C[i * ldc + j] = ep->apply(C[i * ldc + j], i);
    return;
  }
#if SOUNDNET_CPU_DISPATCH
  if (variant == cpu_kernels::avx512 && shape_n <= 16)
    return sgemm_blocked<12, 16>(m, n, k, A, B, C, ldc, accumulate, scratch, micro_avx512_narrow, ep);
  if (variant == cpu_kernels::avx512)
    return sgemm_blocked<8, 32>(m, n, k, A, B, C, ldc, accumulate, scratch, micro_avx512, ep);
  if (variant == cpu_kernels::avx2_fma)
    return sgemm_blocked<6, 16>(m, n, k, A, B, C, ldc, accumulate, scratch, micro_avx2, ep);
#endif
  return sgemm_blocked<4, 8>(m, n, k, A, B, C, ldc, accumulate, scratch, micro_generic, ep);
}

// ---- GEMM on operands packed by the caller (the convolution's chunks) -----------------------

/// The register block of the packed GEMM in variant v: mr rows of A, nr columns of B.
struct gemm_block {
  long mr, nr;
};
inline gemm_block packed_block(cpu_kernels v) {
  if (v == cpu_kernels::avx512) return {8, 32};
  if (v == cpu_kernels::avx2_fma) return {6, 16};
  return {4, 8};
}

/// Floats of A (m x k) packed for variant v: whole mr-row slivers.
inline long packed_a_size(cpu_kernels v, long m, long k) {
  const long mr = packed_block(v).mr;
  return (m + mr - 1) / mr * mr * k;
}

/// A (m x k, rows lda apart) as mr-row slivers over the whole of k: out[s][p][r], zero rows past m.
inline void pack_a_whole(cpu_kernels v, const float* A, long lda, long m, long k, float* out) {
  const long mr = packed_block(v).mr;
  for (long s = 0; s < m; s += mr)
    for (long p = 0; p < k; ++p) {
      float* o = out + s * k + p * mr;
      for (long r = 0; r < mr; ++r) o[r] = s + r < m ? A[(s + r) * lda + p] : 0.0f;
    }
}

/// C (m x n, rows ldc apart) = A B, finished by `ep` (optional), in variant v. ap: A packed by
/// pack_a_whole; bp: B (k x n) as nr-column slivers over the whole of k, bp[t][p][c] (columns
/// past n are read but not stored; they must be finite). Sums k ascending in blocks of 256, the
/// order sgemm uses.
inline void sgemm_packed(cpu_kernels v, long m, long n, long k, const float* ap, const float* bp, float* C, long ldc,
                         const row_epilogue* ep) {
  const gemm_block blk = packed_block(v);
  micro_kernel micro = micro_generic;
#if SOUNDNET_CPU_DISPATCH
  if (v == cpu_kernels::avx512) micro = micro_avx512;
  if (v == cpu_kernels::avx2_fma) micro = micro_avx2;
#endif
  constexpr long kc_max = 256;
  for (long p0 = 0; p0 < k; p0 += kc_max) {
    const long kc = std::min(kc_max, k - p0);
    const bool last = p0 + kc >= k;
    for (long t = 0; t < n; t += blk.nr)
      for (long s = 0; s < m; s += blk.mr) {
        const row_epilogue rows = ep && last ? ep->rows_from(s) : row_epilogue{};
        micro(kc, ap + s * k + p0 * blk.mr, bp + t * k + p0 * blk.nr, C + s * ldc + t, ldc,
              std::min(blk.mr, m - s), std::min(blk.nr, n - t), p0 > 0, ep && last ? &rows : nullptr);
      }
  }
}

// ---- the direct one-input-channel convolution ------------------------------------------------

/// One task of the direct kernel: output rows [ob*ROWS, ob*ROWS + ROWS) of clip `n`, blocks
/// [b_begin, b_end) of LANES steps, from the phase-split input (see ops<cpu, float>) and the
/// weights packed as (C_out / ROWS, K, ROWS). Writes raw sums (the caller's epilogue adds the
/// rest). out: C_out rows of t_out, for this clip.
#if SOUNDNET_VECTOR_EXTENSIONS
#define SOUNDNET_DIRECT_KERNEL(NAME, ATTR, LANES, ROWS)                                                \
  ATTR inline void NAME(const float* phases, long span, long S, long K, const float* wp, long b_begin,    \
                        long b_end, long t_out, float* out, long ob, const row_epilogue* ep) {             \
    typedef float vec __attribute__((vector_size(LANES * sizeof(float))));                             \
    typedef int ivec __attribute__((vector_size(LANES * sizeof(int))));                                \
    for (long b = b_begin; b < b_end; ++b) {                                                           \
      const long t = b * LANES;                                                                        \
      vec acc[ROWS];                                                                                   \
      for (int r = 0; r < ROWS; ++r) acc[r] = vec{};                                                   \
      for (long p = 0; p < S; ++p) { /* taps k = j*S + p read phase p at offset j */                   \
        const float* src = phases + p * span + t;                                                      \
        for (long k = p, j = 0; k < K; k += S, ++j) {                                                  \
          vec v;                                                                                       \
          std::memcpy(&v, src + j, sizeof v);                                                          \
          const float* wk = wp + k * ROWS;                                                             \
          for (int r = 0; r < ROWS; ++r) acc[r] += wk[r] * v;                                          \
        }                                                                                              \
      }                                                                                                \
      const long width = std::min<long>(LANES, t_out - t);                                             \
      if (ep)                                                                                          \
        for (int r = 0; r < ROWS; ++r) {                                                               \
          if (ep->scale) acc[r] *= ep->scale[ob * ROWS + r];                                           \
          if (ep->shift) acc[r] += ep->shift[ob * ROWS + r];                                           \
          if (ep->relu) acc[r] = (vec)((ivec)acc[r] & (ivec)(acc[r] > vec{}));                         \
        }                                                                                              \
      for (int r = 0; r < ROWS; ++r)                                                                   \
        std::memcpy(out + (ob * ROWS + r) * t_out + t, &acc[r], static_cast<std::size_t>(width) * sizeof(float)); \
    }                                                                                                  \
  }
SOUNDNET_DIRECT_KERNEL(direct_generic, , 4, 8)
#if SOUNDNET_CPU_DISPATCH
SOUNDNET_DIRECT_KERNEL(direct_avx2, SOUNDNET_TARGET("avx2,fma"), 8, 8)
SOUNDNET_DIRECT_KERNEL(direct_avx512, SOUNDNET_TARGET("avx512f,fma"), 16, 16)
#endif
#undef SOUNDNET_DIRECT_KERNEL
#else
inline void direct_generic(const float* phases, long span, long S, long K, const float* wp, long b_begin, long b_end,
                           long t_out, float* out, long ob, const row_epilogue* ep) {
  constexpr int LANES = 4, ROWS = 8;
  for (long b = b_begin; b < b_end; ++b) {
    const long t = b * LANES;
    float acc[ROWS][LANES] = {};
    for (long p = 0; p < S; ++p)
      for (long k = p, j = 0; k < K; k += S, ++j)
        for (int r = 0; r < ROWS; ++r)
          for (int l = 0; l < LANES; ++l) acc[r][l] += wp[k * ROWS + r] * phases[p * span + t + j + l];
    const long width = std::min<long>(LANES, t_out - t);
    for (int r = 0; r < ROWS; ++r)
      for (long l = 0; l < width; ++l)
        out[(ob * ROWS + r) * t_out + t + l] = ep ? ep->apply(acc[r][l], ob * ROWS + r) : acc[r][l];
  }
}
#endif

// ---- max-pool without indices (inference) ---------------------------------------------------

// y[t] = max of the window x[t*K, t*K + K) (kernel = stride = K), NaN propagating: the same values
// as ops<cpu, float>::max_pool_forward, written without branches so the compiler vectorises it.
#define SOUNDNET_POOL_KERNEL(NAME, ATTR)                                  \
  template <int K>                                                        \
  ATTR inline void NAME(const float* x, long t_out, float* y) {           \
    for (long t = 0; t < t_out; ++t) {                                    \
      const float* w = x + t * K;                                         \
      float v = w[0];                                                     \
      for (int k = 1; k < K; ++k) {                                       \
        const float c = w[k];                                             \
        v = (c > v || c != c) ? c : v;                                    \
      }                                                                   \
      y[t] = v;                                                           \
    }                                                                     \
  }
SOUNDNET_POOL_KERNEL(pool_generic, )
#if SOUNDNET_CPU_DISPATCH
SOUNDNET_POOL_KERNEL(pool_avx2, SOUNDNET_TARGET("avx2,fma"))
SOUNDNET_POOL_KERNEL(pool_avx512, SOUNDNET_TARGET("avx512f,fma"))
#endif
#undef SOUNDNET_POOL_KERNEL

/// One row of a non-overlapping max-pool with kernel K (4 or 8, SoundNet's); false for other
/// shapes (the caller's general loop runs).
inline bool pool_row(long kernel, long stride, const float* x, long t_out, float* y) {
  if (kernel != stride || (kernel != 4 && kernel != 8)) return false;
  const cpu_kernels k = active_cpu_kernels();
#if SOUNDNET_CPU_DISPATCH
  if (k == cpu_kernels::avx512) return kernel == 8 ? pool_avx512<8>(x, t_out, y) : pool_avx512<4>(x, t_out, y), true;
  if (k == cpu_kernels::avx2_fma) return kernel == 8 ? pool_avx2<8>(x, t_out, y) : pool_avx2<4>(x, t_out, y), true;
#endif
  (void)k;
  kernel == 8 ? pool_generic<8>(x, t_out, y) : pool_generic<4>(x, t_out, y);
  return true;
}

/// Steps (lanes) and output rows of one direct-kernel block in a variant.
inline void direct_shape(cpu_kernels k, long& lanes, long& rows) {
  lanes = k == cpu_kernels::avx512 ? 16 : k == cpu_kernels::avx2_fma ? 8 : 4;
  rows = k == cpu_kernels::avx512 ? 16 : 8;
}

inline void direct_task(cpu_kernels k, const float* phases, long span, long S, long K, const float* wp, long b_begin,
                        long b_end, long t_out, float* out, long ob, const row_epilogue* ep) {
#if SOUNDNET_CPU_DISPATCH
  if (k == cpu_kernels::avx512) return direct_avx512(phases, span, S, K, wp, b_begin, b_end, t_out, out, ob, ep);
  if (k == cpu_kernels::avx2_fma) return direct_avx2(phases, span, S, K, wp, b_begin, b_end, t_out, out, ob, ep);
#endif
  (void)k;
  direct_generic(phases, span, S, K, wp, b_begin, b_end, t_out, out, ob, ep);
}

}  // namespace kernels
SOUNDNET_ABI_END
}  // namespace soundnet
