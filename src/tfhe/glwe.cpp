#include "veil/tfhe/glwe.hpp"

#include <stdexcept>
#include <string>

#include "kernels/kernel_set.hpp"

namespace veil::tfhe {

GlweEncryptor::GlweEncryptor(const GlweSecretKey& key) : key_(key) {
  const Fft& fft = Fft::get(key.polynomial_size());
  multipliers_.reserve(key.glwe_dimension().value);
  for (std::size_t i = 0; i < key.glwe_dimension().value; ++i) multipliers_.emplace_back(fft, key.polynomial(i));
}

void GlweEncryptor::compute_body(std::span<const Torus> mask, std::span<const Torus> plaintext, double std_dev,
                                 Csprng& noise, std::span<Torus> body) {
  const std::size_t n = key_.polynomial_size().value;
  const std::size_t k = key_.glwe_dimension().value;
  if (mask.size() != k * n || body.size() != n || (!plaintext.empty() && plaintext.size() != n))
    throw std::invalid_argument("GLWE body: mask of " + std::to_string(mask.size()) + " words for k=" +
                                std::to_string(k) + ", N=" + std::to_string(n));
  GaussianSampler sampler(std_dev);
  for (std::size_t j = 0; j < n; ++j) body[j] = (plaintext.empty() ? 0 : plaintext[j]) + sampler.sample(noise);
  for (std::size_t i = 0; i < k; ++i) multipliers_[i].multiply_add(mask.subspan(i * n, n), body);
}

void GlweEncryptor::encrypt(std::span<const Torus> plaintext, double std_dev, EncryptionRandomness& rng,
                            GlweCiphertext& out) {
  const std::size_t n = key_.polynomial_size().value;
  const std::size_t k = key_.glwe_dimension().value;
  auto data = out.data();
  rng.mask.fill(data.first(k * n));
  compute_body(data.first(k * n), plaintext, std_dev, rng.noise, data.subspan(k * n, n));
}

void GlweEncryptor::compute_ggsw_row_body(std::span<const Torus> mask, std::size_t component, std::size_t level,
                                          Torus mu, DecompositionBaseLog base_log, double std_dev, Csprng& noise,
                                          std::span<Torus> body) {
  compute_body(mask, {}, std_dev, noise, body);
  const Torus g = Torus{1} << (64 - level * base_log.value);
  const std::size_t k = key_.glwe_dimension().value;
  if (component == k) {
    body[0] += mu * g;
  } else {
    // phase gains -mu * g * S_component
    auto s = key_.polynomial(component);
    const Torus m = Torus{0} - mu * g;
    for (std::size_t j = 0; j < body.size(); ++j) body[j] += m & (Torus{0} - s[j]);
  }
}

void GlweEncryptor::encrypt_ggsw(Torus mu, double std_dev, EncryptionRandomness& rng, GgswCiphertext& out) {
  const GgswShape& shape = out.shape();
  const std::size_t n = shape.polynomial_size.value;
  const std::size_t k = shape.glwe_dimension.value;
  const std::size_t l = shape.level_count.value;
  for (std::size_t i = 0; i <= k; ++i) {
    for (std::size_t j = 1; j <= l; ++j) {
      auto row = out.row(i * l + (j - 1));
      rng.mask.fill(row.first(k * n));
      compute_ggsw_row_body(row.first(k * n), i, j, mu, shape.base_log, std_dev, rng.noise, row.subspan(k * n, n));
    }
  }
}

AlignedVector<Torus> decrypt_glwe_phase(const GlweSecretKey& key, const GlweCiphertext& ct) {
  const std::size_t n = key.polynomial_size().value;
  const std::size_t k = key.glwe_dimension().value;
  if (ct.glwe_dimension() != key.glwe_dimension() || ct.polynomial_size() != key.polynomial_size())
    throw std::invalid_argument("GLWE ciphertext and key shapes differ");
  const Fft& fft = Fft::get(key.polynomial_size());
  AlignedVector<Torus> dot(n, 0);
  for (std::size_t i = 0; i < k; ++i) SmallPolynomialMultiplier(fft, key.polynomial(i)).multiply_add(ct.polynomial(i), dot);
  AlignedVector<Torus> phase(n);
  auto body = ct.polynomial(k);
  for (std::size_t j = 0; j < n; ++j) phase[j] = body[j] - dot[j];
  return phase;
}

void convert_ggsw_to_fourier(const GgswShape& shape, std::span<const Torus> ggsw, double* out, FftScratch& scratch) {
  const std::size_t n = shape.polynomial_size.value;
  const Fft& fft = Fft::get(shape.polynomial_size);
  const std::size_t polys = shape.row_count() * glwe_size(shape.glwe_dimension);
  for (std::size_t p = 0; p < polys; ++p) fft.forward_torus_interleaved(ggsw.data() + p * n, out + p * n, scratch);
}

FourierGgswCiphertext convert_ggsw_to_fourier(const GgswCiphertext& ggsw) {
  FourierGgswCiphertext out(ggsw.shape());
  FftScratch scratch(ggsw.shape().polynomial_size);
  convert_ggsw_to_fourier(ggsw.shape(), ggsw.data(), out.spectrum(0, 0), scratch);
  return out;
}

ExternalProductScratch::ExternalProductScratch(const GgswShape& shape)
    : fft(shape.polynomial_size),
      state(shape.polynomial_size.value),
      digit_spectra(shape.row_count() * shape.polynomial_size.value),
      accumulator(glwe_size(shape.glwe_dimension) * shape.polynomial_size.value) {}

namespace {

// The GLWE that an external product decomposes: component i is in + i N, or, where
// `difference`, the blind rotation's (X^t - 1) * (in + i N), formed as its first digits are.
struct DecomposedInput {
  const Torus* in;
  std::size_t t = 0;
  bool difference = false;
};

// out += GGSW [x] the GLWE `input`, rounded to the decomposition's top bits
// (Decomposer::round_to_top_bits) in the pass that forms its first level's digits. Every
// row's digit spectrum first, then all output spectra in one pass over the rows, each
// written once. `dot(spectra, acc)` writes the k+1 output spectra into acc from the digit
// spectra. `out` is written only after every component is decomposed, so it may be the input.
template <class Dot>
void decompose_dot_add(const GgswShape& shape, const DecomposedInput& input, Dot dot, std::span<Torus> out,
                       ExternalProductScratch& scratch) {
  const std::size_t n = shape.polynomial_size.value;
  const std::size_t parts = glwe_size(shape.glwe_dimension);
  const std::size_t l = shape.level_count.value;
  const std::size_t base_log = shape.base_log.value;
  const Fft& fft = Fft::get(shape.polynomial_size);
  double* spectra = scratch.digit_spectra.data();  // row i * l + (j - 1): component i, level j
  Torus* state = l > 1 ? scratch.state.data() : nullptr;
  for (std::size_t i = 0; i < parts; ++i) {
    // Least significant level first: the carries run upward.
    fft.forward_first_digits_interleaved(input.in + i * n, input.t, input.difference, base_log * l, base_log, state,
                                         scratch.fft, spectra + (i * l + (l - 1)) * n);
    for (std::size_t j = l - 1; j >= 1; --j)
      fft.forward_next_digits_interleaved(state, base_log, scratch.fft, spectra + (i * l + (j - 1)) * n);
  }
  double* acc = scratch.accumulator.data();
  dot(static_cast<const double*>(spectra), acc);
  for (std::size_t o = 0; o < parts; ++o) fft.backward_add_torus_interleaved(acc + o * n, out.data() + o * n, scratch.fft);
}

void external_product_add_input(const GgswShape& shape, const double* fourier_ggsw, const DecomposedInput& input,
                                std::span<Torus> out, ExternalProductScratch& scratch, const double* prefetch) {
  const std::size_t n = shape.polynomial_size.value;
  const std::size_t parts = glwe_size(shape.glwe_dimension);
  const std::size_t rows = shape.row_count();
  decompose_dot_add(
      shape, input,
      [&](const double* spectra, double* acc) {
        fourier_dot_outputs(acc, n, parts, spectra, n, rows, fourier_ggsw, parts * n, n, n / 2, prefetch);
      },
      out, scratch);
}

}  // namespace

void external_product_add(const GgswShape& shape, const double* fourier_ggsw, std::span<const Torus> in,
                          std::span<Torus> out, ExternalProductScratch& scratch, const double* prefetch) {
  external_product_add_input(shape, fourier_ggsw, DecomposedInput{in.data()}, out, scratch, prefetch);
}

void blind_rotation_step(const GgswShape& shape, const double* fourier_ggsw, std::size_t a, std::span<Torus> acc,
                         ExternalProductScratch& scratch, const double* prefetch) {
  // The difference is rounded as its digits are formed; acc is only written after every
  // component is decomposed, so reading it there sees the step's input.
  external_product_add_input(shape, fourier_ggsw, DecomposedInput{acc.data(), a, true}, acc, scratch, prefetch);
}

void multi_bit_blind_rotation_step(const GgswShape& shape, const double* group_block, std::size_t per_group,
                                   const std::size_t* exponents, std::span<Torus> acc, ExternalProductScratch& scratch) {
  const std::size_t n = shape.polynomial_size.value;
  const Fft& fft = Fft::get(shape.polynomial_size);
  // acc is decomposed whole before the products are added to it.
  decompose_dot_add(
      shape, DecomposedInput{acc.data()},
      [&](const double* spectra, double* out) {
        multi_bit_fourier_dot(fft, out, n, glwe_size(shape.glwe_dimension), spectra, n, shape.row_count(), group_block,
                              per_group, exponents);
      },
      acc, scratch);
}

void external_product(const FourierGgswCiphertext& ggsw, const GlweCiphertext& in, GlweCiphertext& out,
                      ExternalProductScratch& scratch) {
  std::fill(out.data().begin(), out.data().end(), Torus{0});
  external_product_add(ggsw.shape(), ggsw.spectrum(0, 0), in.data(), out.data(), scratch);
}

void cmux(const FourierGgswCiphertext& ggsw, GlweCiphertext& c0, const GlweCiphertext& c1,
          ExternalProductScratch& scratch) {
  GlweCiphertext diff(c0.glwe_dimension(), c0.polynomial_size());
  auto d = diff.data();
  auto a = c0.data();
  auto b = c1.data();
  for (std::size_t t = 0; t < d.size(); ++t) d[t] = b[t] - a[t];
  external_product_add(ggsw.shape(), ggsw.spectrum(0, 0), d, a, scratch);
}

void sample_extract(std::span<const Torus> glwe, GlweDimension k, PolynomialSize n, std::span<Torus> out) {
  const std::size_t nn = n.value;
  if (glwe.size() != glwe_size(k) * nn || out.size() != k.value * nn + 1)
    throw std::invalid_argument("sample_extract: GLWE of " + std::to_string(glwe.size()) + " words into LWE of " +
                                std::to_string(out.size()));
  for (std::size_t i = 0; i < k.value; ++i) {
    const Torus* a = glwe.data() + i * nn;
    Torus* o = out.data() + i * nn;
    o[0] = a[0];
    for (std::size_t j = 1; j < nn; ++j) o[j] = Torus{0} - a[nn - j];
  }
  out[k.value * nn] = glwe[k.value * nn];
}

void sample_extract_rotated_add(std::span<const Torus> glwe, GlweDimension k, PolynomialSize n, std::size_t shift,
                                std::int64_t factor, std::span<Torus> out) {
  const std::size_t nn = n.value;
  if (glwe.size() != glwe_size(k) * nn || out.size() != k.value * nn + 1 || shift >= nn)
    throw std::invalid_argument("sample_extract_rotated_add: GLWE of " + std::to_string(glwe.size()) +
                                " words into LWE of " + std::to_string(out.size()) + ", shift " + std::to_string(shift));
  // Coefficient i of a GLWE (a, b) is the LWE (a'_t = a[i - t] for t <= i, -a[N + i - t]
  // above; body b[i]); the constant coefficient of X^shift (a, b) is coefficient 0 for
  // shift 0 and minus coefficient N - shift otherwise.
  const Torus f = static_cast<Torus>(factor);
  const Torus sf = shift == 0 ? f : Torus{0} - f;
  const std::size_t i = shift == 0 ? 0 : nn - shift;
  for (std::size_t c = 0; c < k.value; ++c) {
    const Torus* a = glwe.data() + c * nn;
    Torus* o = out.data() + c * nn;
    for (std::size_t t = 0; t <= i; ++t) o[t] += sf * a[i - t];
    for (std::size_t t = i + 1; t < nn; ++t) o[t] -= sf * a[nn + i - t];
  }
  out[k.value * nn] += sf * glwe[k.value * nn + i];
}

}  // namespace veil::tfhe
