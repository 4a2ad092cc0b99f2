// Veil's own complex FFT: the N/2-point transforms of every negacyclic product (fft.hpp), at
// every ring size, with a key-stream prefetch embedded in its butterflies.
//
// Why it exists. A single PBS streams the whole Fourier bootstrap key (90 MB for the 4-bit
// multi-bit set) once, and profiling put that stream at about half of the PBS: the
// multiply-add waits on memory while the transforms before and after it leave the memory
// system idle (docs/perf-log.md). FFTW's codelets could not carry other work, so the key
// could not be fetched while they ran. These transforms issue a few cache-line prefetches
// (to L2) per butterfly iteration from a caller-given range: the blind rotation points that
// range at the key block of its next step, which then arrives while the transforms compute.
// With 512-bit vectors they are also faster than FFTW at every size in use (256 to 8192
// points; docs/perf-log.md, "Veil's transform at every N").
//
// The algorithm: a Stockham autosort DFT (natural order in and out, out of place, no
// bit-reversal pass) on interleaved (re, im) pairs. For a stage of radix R, length n and
// stride s, output y[q + s (R p + r)] = (sum_k x[q + s (p + k n/R)] w_R^(rk)) w_n^(rp) with
// w_n = exp(sign 2 pi i / n); unnormalised. The plan: radix 8 while 8 divides what is left;
// the last stage, whose length is its radix (one butterfly: no twiddles), takes the rest as
// radix 4 or 2, or as radix 16 up to 1024 points (1024 = 8 * 8 * 16: three passes over the
// data). The first stage (stride 1) runs vectorised over the butterfly index p, its twiddles
// loaded per lane, and transposes its outputs; the later ones run vectorised over the stride
// index q with broadcast twiddles. The kernel sets run the same butterflies on vectors of
// four points (AVX-512), two (AVX2) or one (portable): src/tfhe/kernels/radix8.inc.
//
// Thread safety: a Radix8Fft is immutable after construction; run() writes only the buffers
// and the prefetch cursor it is given.
#pragma once

#include <cstddef>
#include <vector>

#include "veil/tfhe/aligned.hpp"

namespace veil::tfhe {

// A range of memory that a transform prefetches into L2 as it runs, kLinesPerIteration
// cache lines per butterfly iteration, until the range is exhausted (the kernels that run
// the transforms advance `next`: src/tfhe/kernels). Prefetches have no architectural
// effect: a cursor changes timing, never a result.
struct KeyStreamPrefetch {
  // Lines per butterfly iteration, measured (docs/perf-log.md). Machine B: in a stand-alone
  // model of the 4-bit multi-bit rotation 1 to 4 lines were tried and 4 ran fastest; in the
  // real 4-bit PBS 4 and 6 ran alike and 8 slower (the butterflies stall on the core's
  // outstanding misses). Prefetching to L1 instead (T0) evicted the transform's own data and
  // ran slower than no prefetch. Machine D (AMD EPYC Zen 5), once the passes ran on 512-bit
  // vectors: 1 line against 4, CPU time per PBS 0.93x (tfhe/4bit_ref128/pbs, where 4 lines
  // fetched a step's whole GGSW five times over the step's transforms, so all at its
  // start) and 0.92x (tfhe/4bit_mb2/pbs); 2 lines 1.06x and 1.01x of 1.
  static constexpr int kLinesPerIteration = 1;

  const char* next = nullptr;
  const char* end = nullptr;

  void reset(const void* begin, std::size_t bytes) {
    next = static_cast<const char*>(begin);
    end = next + bytes;
  }
  void clear() { next = end = nullptr; }
};

class Radix8Fft {
 public:
  // One pass: its radix, the length of the sub-transforms it splits and its stride (the
  // algorithm above), and where its twiddles start in the transform's table.
  struct Stage {
    std::size_t radix = 0, length = 0, stride = 0, twiddle_offset = 0;
  };

  // True where the active kernel set (veil/tfhe/isa.hpp) has the transform: every set has
  // it (the portable one in plain C++, without intrinsics), so this is always true.
  static bool available();
  // points: a power of two in [16, 65536]; sign -1 (forward) or +1 (backward).
  // Throws std::invalid_argument otherwise.
  Radix8Fft(std::size_t points, int sign);

  std::size_t stage_count() const { return stages_.size(); }
  // The plan that run() hands to the kernel set (kernels/kernel_set.hpp's radix8_run): its
  // stages and their twiddle table. For tests that run one set's stages against another's.
  const std::vector<Stage>& stages() const { return stages_; }
  const double* twiddles() const { return twiddles_.data(); }

  // out <- DFT(in), `points` interleaved complex values each, all 32-byte aligned.
  // `spare` is a work buffer of the same size; it may be `in` (destroying it) only when
  // stage_count() is odd. REQUIRES: in != out, spare != out.
  void run(const double* in, double* out, double* spare, KeyStreamPrefetch& prefetch) const;

 private:
  int sign_;
  std::vector<Stage> stages_;
  // Every stage's twiddles, the first stage's (read by aligned loads) at offset 0.
  AlignedVector<double> twiddles_;
};

}  // namespace veil::tfhe
