// Prototype CPU kernels for XLA's FFI, timed by benchmarks/fused_cpu.py against the XLA steps
// they would replace. Not part of the adamjax package (see docs/performance.md, "A fused CPU
// kernel, measured").
//
// Each kernel updates one leaf in place in a single pass over its entries:
// - AdamW / AdamWStats: m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2,
//   p' = p - lr (m'/c1 / (sqrt(v'/c2 + eps_root) + eps) + wd p); the Stats variant also returns
//   the sums with_diagnostics reports (g^2, p^2, u^2, |m_hat|, v_hat, eta) and v_hat's extremes.
// - Q8Adam: the same step with both moments stored as adamjax's q8 dynamic map (256-entry
//   blocks, one float32 scale each): decoded by table lookup, updated, and encoded again with
//   the arithmetic of adamjax._formats._encode_dynamic.
// Scalars (float32[10]): b1, b2, c1, c2, eps, eps_root, lr, wd, 1 - b1, 1 - b2 (c1, c2: the bias
// corrections; 1 - b1 and 1 - b2 rounded from float64, as adamjax's).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using F32 = ffi::Buffer<ffi::F32>;
using U8 = ffi::Buffer<ffi::U8>;

namespace {

constexpr int64_t kChunk = 4096;  // entries per parallel chunk of the float kernels
constexpr int kBlock = 256;       // q8 block
constexpr float kSmallestNormal = 1.17549435e-38f;

struct Scalars {
  float b1, b2, ic1, ic2, eps, eps_root, lr, wd, omb1, omb2;
  explicit Scalars(const float* s)
      : b1(s[0]), b2(s[1]), ic1(1.0f / s[2]), ic2(1.0f / s[3]), eps(s[4]), eps_root(s[5]),
        lr(s[6]), wd(s[7]), omb1(s[8]), omb2(s[9]) {}
};

template <bool kStats>
ffi::Error AdamWImpl(F32 g, F32 p, F32 m, F32 v, F32 scalars, ffi::ResultBuffer<ffi::F32> po,
                     ffi::ResultBuffer<ffi::F32> mo, ffi::ResultBuffer<ffi::F32> vo,
                     ffi::ResultBuffer<ffi::F32> stats) {
  const int64_t n = g.element_count();
  const float *G = g.typed_data(), *P = p.typed_data(), *M = m.typed_data(), *V = v.typed_data();
  float *PO = po->typed_data(), *MO = mo->typed_data(), *VO = vo->typed_data();
  const Scalars s(scalars.typed_data());
  double gg = 0, pp = 0, uu = 0, am = 0, sv = 0, se = 0;
  float vmin = std::numeric_limits<float>::infinity(), vmax = -vmin;
#pragma omp parallel for reduction(+ : gg, pp, uu, am, sv, se) reduction(min : vmin) \
    reduction(max : vmax) schedule(static)
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t e = b + kChunk < n ? b + kChunk : n;
    float lgg = 0, lpp = 0, luu = 0, lam = 0, lsv = 0, lse = 0, lmin = vmin, lmax = vmax;
#pragma omp simd reduction(+ : lgg, lpp, luu, lam, lsv, lse) reduction(min : lmin) \
    reduction(max : lmax)
    for (int64_t i = b; i < e; ++i) {
      const float gi = G[i], pi = P[i];
      const float mi = s.b1 * M[i] + s.omb1 * gi;
      const float vi = s.b2 * V[i] + s.omb2 * (gi * gi);
      const float mh = mi * s.ic1, vh = vi * s.ic2;
      const float eta = s.lr / (std::sqrt(vh + s.eps_root) + s.eps);
      const float u = -(eta * mh + s.lr * s.wd * pi);
      MO[i] = mi;
      VO[i] = vi;
      PO[i] = pi + u;
      if (kStats) {
        lgg += gi * gi;
        lpp += pi * pi;
        luu += u * u;
        lam += std::fabs(mh);
        lsv += vh;
        lse += eta;
        lmin = vh < lmin ? vh : lmin;
        lmax = vh > lmax ? vh : lmax;
      }
    }
    gg += lgg, pp += lpp, uu += luu, am += lam, sv += lsv, se += lse;
    vmin = lmin < vmin ? lmin : vmin;
    vmax = lmax > vmax ? lmax : vmax;
  }
  float* o = stats->typed_data();
  const double sums[6] = {gg, pp, uu, am, sv, se};
  for (int k = 0; k < 6; ++k) o[k] = static_cast<float>(sums[k]);
  o[6] = vmin;
  o[7] = vmax;
  return ffi::Error::Success();
}

// The code of magnitude a in [0, 1] (neg: its sign) in adamjax's dynamic map, by the same
// float32 arithmetic as adamjax._formats._encode_dynamic.
inline __attribute__((always_inline)) int Encode(float a, int neg, int is_signed) {
  const int l1 = a < 1e-1f, l2 = a < 1e-2f, l3 = a < 1e-3f, l4 = a < 1e-4f, l5 = a < 1e-5f,
            l6 = a < 1e-6f, l7 = a < 1e-7f;
  const int e = l1 + l2 + l3 + l4 + l5 + l6 + l7;  // the decade; 7: below 1e-7, zero
  const float scale = (l1 ? 10.0f : 1.0f) * (l2 ? 10.0f : 1.0f) * (l3 ? 10.0f : 1.0f) *
                      (l4 ? 10.0f : 1.0f) * (l5 ? 10.0f : 1.0f) * (l6 ? 10.0f : 1.0f) *
                      (l7 ? 10.0f : 1.0f);
  const int top = is_signed ? 6 : 7;
  const int sh = top - e > 0 ? top - e : 0;
  const int bins = 1 << sh;
  const float n = (float)bins;
  const float q = a * scale;
  int k = (int)std::floor((q - 0.1f) * (n / 0.9f));
  k = k < 0 ? 0 : k;
  k = k > bins - 1 ? bins - 1 : k;
  const float middle = 0.1f + 0.9f * ((float)k + 0.5f) / n;
  const float below = e < 6 ? (1.0f - 0.9f / n) / 10.0f : 0.0f;
  const int down = (k == 0) & (q - below < middle - q);
  const int position = bins - (is_signed ? 1 : 2) + k - down;
  const float top_mid = 1.0f - 0.45f / (float)(1 << top);
  const int one = a >= (1.0f + top_mid) / 2.0f;
  int code;
  if (is_signed) {
    code = neg ? 126 - position : 128 + position;
    code = (one & !neg) ? 255 : code;
    code = e == 7 ? 127 : code;
  } else {
    code = one ? 255 : 1 + position;
    code = code < 1 ? 1 : code;
    code = ((e == 7) & (a == 0.0f)) ? 0 : code;
  }
  return code;
}

// Codes of one block of new moments x with block scale `scale` (adamjax's _normalized, then
// _encode_dynamic): a NaN or tiny scale stores the codes of 0.
template <int kSigned>
void EncodeBlock(const float* __restrict x, float scale, uint8_t* __restrict out) {
  const float inv4 = scale > kSmallestNormal ? 4.0f / scale : 0.0f;  // false for NaN
  const int usable = inv4 != 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    const float scaled = x[j] * inv4 * 0.25f;
    const float y = usable ? scaled : 0.0f;
    // The sign from the bits (an integer lane, which GCC vectorizes with the integer selects of
    // Encode); -0 counts as negative, but 0 gets the code of 0 either way.
    uint32_t bits;
    std::memcpy(&bits, &y, sizeof bits);
    const int neg = kSigned ? static_cast<int>(bits >> 31) : 0;
    out[j] = static_cast<uint8_t>(Encode(std::fabs(y), neg, kSigned));
  }
}

ffi::Error Q8AdamImpl(F32 g, F32 p, U8 mc, F32 ms, U8 vc, F32 vs, F32 tables, F32 scalars,
                      ffi::ResultBuffer<ffi::F32> po, ffi::ResultBuffer<ffi::U8> mco,
                      ffi::ResultBuffer<ffi::F32> mso, ffi::ResultBuffer<ffi::U8> vco,
                      ffi::ResultBuffer<ffi::F32> vso) {
  const int64_t n = g.element_count(), blocks = ms.element_count();
  if (blocks * kBlock != n) {
    return ffi::Error::InvalidArgument("Q8Adam: the leaf must hold whole blocks of 256 entries");
  }
  const float *G = g.typed_data(), *P = p.typed_data(), *MS = ms.typed_data(),
              *VS = vs.typed_data(), *TS = tables.typed_data(), *TU = TS + 256;
  const uint8_t *MC = mc.typed_data(), *VC = vc.typed_data();
  float *PO = po->typed_data(), *MSO = mso->typed_data(), *VSO = vso->typed_data();
  uint8_t *MCO = mco->typed_data(), *VCO = vco->typed_data();
  const Scalars s(scalars.typed_data());
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float mb[kBlock], vb[kBlock];
    const int64_t o = b * kBlock;
    float mhi = 0, mlo = 0, vhi = 0, vlo = 0, mpoison = 0, vpoison = 0;
#pragma omp simd reduction(max : mhi, vhi) reduction(min : mlo, vlo) reduction(+ : mpoison, vpoison)
    for (int j = 0; j < kBlock; ++j) {
      const int64_t i = o + j;
      const float gi = G[i], pi = P[i];
      const float mi = s.b1 * (TS[MC[i]] * MS[b]) + s.omb1 * gi;
      const float vi = s.b2 * (TU[VC[i]] * VS[b]) + s.omb2 * (gi * gi);
      const float u = -s.lr * ((mi * s.ic1) / (std::sqrt(vi * s.ic2 + s.eps_root) + s.eps) +
                               s.wd * pi);
      PO[i] = pi + u;
      mb[j] = mi;
      vb[j] = vi;
      mhi = mi > mhi ? mi : mhi;
      mlo = mi < mlo ? mi : mlo;
      vhi = vi > vhi ? vi : vhi;
      vlo = vi < vlo ? vi : vlo;
      mpoison += mi - mi;  // NaN for a block with a non-finite entry, as adamjax's scale
      vpoison += vi - vi;
    }
    const float msc = (mhi > -mlo ? mhi : -mlo) + mpoison;
    const float vsc = (vhi > -vlo ? vhi : -vlo) + vpoison;
    MSO[b] = msc;
    VSO[b] = vsc;
    EncodeBlock<1>(mb, msc, MCO + o);
    EncodeBlock<0>(vb, vsc, VCO + o);
  }
  return ffi::Error::Success();
}

}  // namespace

#define ADAMW_BINDING                                                            \
  ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()        \
      .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>()
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamW, AdamWImpl<false>, ADAMW_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamWStats, AdamWImpl<true>, ADAMW_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(Q8Adam, Q8AdamImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<U8>().Arg<F32>().Arg<U8>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<U8>().Ret<F32>().Ret<U8>().Ret<F32>());
