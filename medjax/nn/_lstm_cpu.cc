// The LSTM recurrence as one XLA FFI call on CPU: the whole sequence in a C++ loop, forward and backward.
//
// The maths is medjax.nn.recurrent.lstm_cell (gate order i, f, g, o; one fused bias), exactly as
// medjax/nn/lstm_fast.py runs it under lax.scan; only the loop moves out of XLA, where every step of a while loop
// costs ~20 µs of fixed overhead on XLA:CPU. What is not sequential stays in XLA as large matmuls: the input
// projection x W_x + b before the call, and the input and weight gradients after the backward call (as cuDNN does).
//
// Batch rows of an LSTM never interact, so the rows are split once between XLA's intra-op threads and each thread
// runs the whole sequence for its rows: no synchronisation inside the time loop.
//
// Targets (registered by medjax/nn/lstm_kernel.py):
//   medjax_lstm_forward(xw f32[T,B,4H], w_h f32[H,4H], mask pred[T,B], c0 f32[B,H], h0 f32[B,H]; reverse)
//     -> hs f32[T,B,H] (h leaving each step, held on masked steps), cs f32[T,B,H] (c likewise),
//        acts f32[T,B,4H] (σ(i), σ(f), tanh(g), σ(o))
//   medjax_lstm_backward(acts, cs, c0, w_h, mask, d_hs f32[T,B,H], d_c f32[B,H], d_h f32[B,H]; reverse)
//     -> dz f32[T,B,4H] (gradient of the gate pre-activations, 0 on masked steps), dc0 f32[B,H], dh0 f32[B,H]

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Eight floats: AVX registers on x86 with -march=native, pairs of NEON registers on ARM; GCC and Clang vectors.
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

inline v8 Load(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }
inline v8 Splat(float x) { return v8{} + x; }

// exp by Cephes' expf: n = round(x / ln 2), a degree-6 polynomial on the remainder, 2^n through the exponent bits.
// Relative error ~1e-7 on [-87.3, 88.3]; inputs are clamped to it, so the result is never 0 or inf.
inline v8 Exp(v8 x) {
  x = x > Splat(88.3762626647949f) ? Splat(88.3762626647949f) : x;
  x = x < Splat(-87.3365447504f) ? Splat(-87.3365447504f) : x;
  const v8 magic = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits
  v8 t = x * 1.44269504088896341f + magic;
  v8 n = t - magic;
  v8i exponent = (reinterpret_cast<v8i&>(t) - 0x4B400000 + 127) << 23;
  v8 r = x - n * 0.693359375f - n * -2.12194440e-4f;
  v8 p = Splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  v8 y = p * r * r + r + 1.0f;
  return y * reinterpret_cast<v8&>(exponent);
}
inline v8 Sigmoid(v8 x) { return 1.0f / (1.0f + Exp(-x)); }
inline v8 Tanh(v8 x) { return 2.0f / (1.0f + Exp(-2.0f * x)) - 1.0f; }
inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float Tanh(float x) { return std::tanh(x); }

// ---- GEMM: C[M, 16·panels] = A[M, K] (row stride lda) @ B, with B packed in panels of 16 columns ----

constexpr int64_t kPanel = 16;  // columns per panel: two vectors
constexpr int kRows = 6;        // rows per micro-kernel: 6 × 2 accumulators + 2 B vectors + 1 broadcast ≤ 16 AVX regs

// Packs B(k, n) = transposed ? b[n * K + k] : b[k * N + n] into panels: out[(p * K + k) * 16 + j] = B(k, 16p + j),
// zero past column N. Done once per call; every step then reads B contiguously.
void Pack(const float* b, int64_t K, int64_t N, bool transposed, float* out) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t k = 0; k < K; ++k) {
      float* dst = out + (p * K + k) * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t n = p * kPanel + j;
        dst[j] = n >= N ? 0.0f : transposed ? b[n * K + k] : b[k * N + n];
      }
    }
  }
}

template <int R>
inline void MicroKernel(const float* a, int64_t lda, const float* bp, int64_t K, float* c, int64_t ldc) {
  v8 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = v8{};
  for (int64_t k = 0; k < K; ++k) {
    const v8 b0 = Load(bp + k * kPanel), b1 = Load(bp + k * kPanel + kLanes);
    for (int r = 0; r < R; ++r) {
      const float s = a[r * lda + k];
      acc[r][0] += s * b0;
      acc[r][1] += s * b1;
    }
  }
  for (int r = 0; r < R; ++r) {
    Store(c + r * ldc, acc[r][0]);
    Store(c + r * ldc + kLanes, acc[r][1]);
  }
}

void Gemm(const float* a, int64_t lda, int64_t M, int64_t K, const float* bp, int64_t panels, float* c) {
  const int64_t ldc = panels * kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    const float* panel = bp + p * K * kPanel;
    float* cp = c + p * kPanel;
    int64_t m = 0;
    for (; m + kRows <= M; m += kRows) MicroKernel<kRows>(a + m * lda, lda, panel, K, cp + m * ldc, ldc);
    switch (M - m) {
      case 5: MicroKernel<5>(a + m * lda, lda, panel, K, cp + m * ldc, ldc); break;
      case 4: MicroKernel<4>(a + m * lda, lda, panel, K, cp + m * ldc, ldc); break;
      case 3: MicroKernel<3>(a + m * lda, lda, panel, K, cp + m * ldc, ldc); break;
      case 2: MicroKernel<2>(a + m * lda, lda, panel, K, cp + m * ldc, ldc); break;
      case 1: MicroKernel<1>(a + m * lda, lda, panel, K, cp + m * ldc, ldc); break;
      default: break;
    }
  }
}

// Per-thread scratch that only grows: after the first step of a run, no call allocates or page-faults.
// Slot 0 holds the packed weights (calling thread), slots 1-3 a chunk's state and GEMM output (any pool thread).
float* Scratch(int slot, int64_t size) {
  thread_local std::vector<float> buffers[4];
  if (static_cast<int64_t>(buffers[slot].size()) < size) buffers[slot].resize(size);
  return buffers[slot].data();
}

// ---- Work split: batch rows in chunks over XLA's intra-op threads ----

// Runs body(chunk) for chunk in [0, chunks). The calling thread takes chunks too and finishes any no pool thread has
// claimed, so this never waits on a task that has not started (no deadlock when the pool is busy or absent).
template <typename F>
void ParallelChunks(ffi::ThreadPool& pool, int64_t chunks, const F& body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, chunks, &body] {
    for (int64_t chunk; (chunk = state->next.fetch_add(1)) < chunks;) {
      body(chunk);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  // A helper that starts after all chunks are claimed touches only `state`, which it co-owns; `body` is used only
  // under a successful claim, and every claim finishes before this function returns.
  for (int64_t i = 1; i < chunks; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

struct Split {
  int64_t chunks, rows;  // chunk k holds batch rows [k * rows, min(B, (k + 1) * rows))
};

Split SplitRows(ffi::ThreadPool& pool, int64_t batch) {
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t chunks = std::max<int64_t>(1, std::min(threads, batch / kRows));
  return {chunks, (batch + chunks - 1) / chunks};
}

// The step processed at position s of the forward loop.
inline int64_t StepAt(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

ffi::Error CheckShapes(int64_t T, int64_t B, int64_t H, const ffi::Buffer<ffi::F32>& w_h) {
  auto w = w_h.dimensions();
  if (w.size() != 2 || w[0] != H || w[1] != 4 * H) {
    return ffi::Error::InvalidArgument("medjax_lstm: w_h must be f32[H, 4H]");
  }
  if (T < 1 || B < 1 || H < 1) return ffi::Error::InvalidArgument("medjax_lstm: empty time, batch or hidden axis");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xw, ffi::Buffer<ffi::F32> w_h,
                   ffi::Buffer<ffi::PRED> mask, ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> h0,
                   ffi::ResultBuffer<ffi::F32> hs, ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> acts,
                   int32_t reverse) {
  auto dims = xw.dimensions();
  if (dims.size() != 3) return ffi::Error::InvalidArgument("medjax_lstm: xw must be f32[T, B, 4H]");
  const int64_t T = dims[0], B = dims[1], G = dims[2], H = G / 4;
  if (auto error = CheckShapes(T, B, H, w_h); error.failure()) return error;
  const int64_t panels = (G + kPanel - 1) / kPanel;
  float* packed = Scratch(0, panels * H * kPanel);
  Pack(w_h.typed_data(), H, G, /*transposed=*/false, packed);
  const Split split = SplitRows(pool, B);

  ParallelChunks(pool, split.chunks, [&](int64_t chunk) {
    const int64_t b0 = chunk * split.rows, rows = std::min(B, b0 + split.rows) - b0;
    if (rows <= 0) return;
    float* c = Scratch(1, rows * H);
    float* h = Scratch(2, rows * H);
    float* z = Scratch(3, rows * panels * kPanel);
    std::memcpy(c, c0.typed_data() + b0 * H, rows * H * sizeof(float));
    std::memcpy(h, h0.typed_data() + b0 * H, rows * H * sizeof(float));
    const int64_t ldz = panels * kPanel;
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = StepAt(s, T, reverse);
      Gemm(h, H, rows, H, packed, panels, z);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = t * B + b0 + r;
        const float* x = xw.typed_data() + row * G;
        const float* zr = z + r * ldz;
        float* act = acts->typed_data() + row * G;
        float* cr = c + r * H;
        float* hr = h + r * H;
        const bool valid = mask.typed_data()[row];
        int64_t j = 0;
        for (; j + kLanes <= H; j += kLanes) {
          const v8 i = Sigmoid(Load(zr + j) + Load(x + j));
          const v8 f = Sigmoid(Load(zr + H + j) + Load(x + H + j));
          const v8 g = Tanh(Load(zr + 2 * H + j) + Load(x + 2 * H + j));
          const v8 o = Sigmoid(Load(zr + 3 * H + j) + Load(x + 3 * H + j));
          Store(act + j, i), Store(act + H + j, f), Store(act + 2 * H + j, g), Store(act + 3 * H + j, o);
          if (valid) {
            const v8 c_new = f * Load(cr + j) + i * g;
            Store(cr + j, c_new);
            Store(hr + j, o * Tanh(c_new));
          }
        }
        for (; j < H; ++j) {
          const float i = Sigmoid(zr[j] + x[j]), f = Sigmoid(zr[H + j] + x[H + j]);
          const float g = Tanh(zr[2 * H + j] + x[2 * H + j]), o = Sigmoid(zr[3 * H + j] + x[3 * H + j]);
          act[j] = i, act[H + j] = f, act[2 * H + j] = g, act[3 * H + j] = o;
          if (valid) {
            cr[j] = f * cr[j] + i * g;
            hr[j] = o * Tanh(cr[j]);
          }
        }
        std::memcpy(cs->typed_data() + (t * B + b0 + r) * H, cr, H * sizeof(float));
        std::memcpy(hs->typed_data() + (t * B + b0 + r) * H, hr, H * sizeof(float));
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> cs,
                    ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::PRED> mask,
                    ffi::Buffer<ffi::F32> d_hs, ffi::Buffer<ffi::F32> d_c, ffi::Buffer<ffi::F32> d_h,
                    ffi::ResultBuffer<ffi::F32> dz, ffi::ResultBuffer<ffi::F32> dc0, ffi::ResultBuffer<ffi::F32> dh0,
                    int32_t reverse) {
  auto dims = acts.dimensions();
  if (dims.size() != 3) return ffi::Error::InvalidArgument("medjax_lstm: acts must be f32[T, B, 4H]");
  const int64_t T = dims[0], B = dims[1], G = dims[2], H = G / 4;
  if (auto error = CheckShapes(T, B, H, w_h); error.failure()) return error;
  const int64_t panels = (H + kPanel - 1) / kPanel;
  float* packed = Scratch(0, panels * G * kPanel);
  Pack(w_h.typed_data(), G, H, /*transposed=*/true, packed);  // W_hᵀ: [4H, H]
  const Split split = SplitRows(pool, B);

  ParallelChunks(pool, split.chunks, [&](int64_t chunk) {
    const int64_t b0 = chunk * split.rows, rows = std::min(B, b0 + split.rows) - b0;
    if (rows <= 0) return;
    float* dc = Scratch(1, rows * H);
    float* dh = Scratch(2, rows * H);
    std::memcpy(dc, d_c.typed_data() + b0 * H, rows * H * sizeof(float));
    std::memcpy(dh, d_h.typed_data() + b0 * H, rows * H * sizeof(float));
    const int64_t ldn = panels * kPanel;
    float* next = Scratch(3, rows * ldn);  // dz_t W_hᵀ for these rows
    // Backward visits the steps in the opposite order to the forward loop.
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = StepAt(s, T, reverse);
      const float* c_prev_all = s == 0 ? c0.typed_data() : cs.typed_data() + StepAt(s - 1, T, reverse) * B * H;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = b0 + r, row = t * B + b;
        const float* act = acts.typed_data() + row * G;
        const float* c = cs.typed_data() + row * H;
        const float* c_prev = c_prev_all + b * H;
        const float* d_out = d_hs.typed_data() + row * H;
        float* dzr = dz->typed_data() + row * G;
        float* dcr = dc + r * H;
        float* dhr = dh + r * H;
        if (!mask.typed_data()[row]) {  // a held step: z is unused, both carried gradients pass through
          std::memset(dzr, 0, G * sizeof(float));
          for (int64_t j = 0; j < H; ++j) dhr[j] += d_out[j];
          continue;
        }
        int64_t j = 0;
        for (; j + kLanes <= H; j += kLanes) {
          const v8 i = Load(act + j), f = Load(act + H + j), g = Load(act + 2 * H + j), o = Load(act + 3 * H + j);
          const v8 dh_t = Load(dhr + j) + Load(d_out + j);
          const v8 tanh_c = Tanh(Load(c + j));
          const v8 dc_t = Load(dcr + j) + dh_t * o * (1.0f - tanh_c * tanh_c);
          Store(dzr + j, dc_t * g * i * (1.0f - i));
          Store(dzr + H + j, dc_t * Load(c_prev + j) * f * (1.0f - f));
          Store(dzr + 2 * H + j, dc_t * i * (1.0f - g * g));
          Store(dzr + 3 * H + j, dh_t * tanh_c * o * (1.0f - o));
          Store(dcr + j, dc_t * f);
        }
        for (; j < H; ++j) {
          const float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
          const float dh_t = dhr[j] + d_out[j], tanh_c = Tanh(c[j]);
          const float dc_t = dcr[j] + dh_t * o * (1.0f - tanh_c * tanh_c);
          dzr[j] = dc_t * g * i * (1.0f - i);
          dzr[H + j] = dc_t * c_prev[j] * f * (1.0f - f);
          dzr[2 * H + j] = dc_t * i * (1.0f - g * g);
          dzr[3 * H + j] = dh_t * tanh_c * o * (1.0f - o);
          dcr[j] = dc_t * f;
        }
      }
      Gemm(dz->typed_data() + (t * B + b0) * G, G, rows, G, packed, panels, next);
      for (int64_t r = 0; r < rows; ++r) {
        if (mask.typed_data()[t * B + b0 + r]) std::memcpy(dh + r * H, next + r * ldn, H * sizeof(float));
      }
    }
    std::memcpy(dc0->typed_data() + b0 * H, dc, rows * H * sizeof(float));
    std::memcpy(dh0->typed_data() + b0 * H, dh, rows * H * sizeof(float));
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MedjaxLstmForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // xw
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w_h
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask
                                  .Arg<ffi::Buffer<ffi::F32>>()   // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h0
                                  .Ret<ffi::Buffer<ffi::F32>>()   // hs
                                  .Ret<ffi::Buffer<ffi::F32>>()   // cs
                                  .Ret<ffi::Buffer<ffi::F32>>()   // acts
                                  .Attr<int32_t>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MedjaxLstmBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // acts
                                  .Arg<ffi::Buffer<ffi::F32>>()   // cs
                                  .Arg<ffi::Buffer<ffi::F32>>()   // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w_h
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask
                                  .Arg<ffi::Buffer<ffi::F32>>()   // d_hs
                                  .Arg<ffi::Buffer<ffi::F32>>()   // d_c
                                  .Arg<ffi::Buffer<ffi::F32>>()   // d_h
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dz
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dc0
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dh0
                                  .Attr<int32_t>("reverse"));
