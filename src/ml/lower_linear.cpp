// Linear models: one integer matmul, no lookup. The client dequantizes the accumulator.
//
// With x_f ~ s_f (q_f - zp_f) and the preprocessing folded into W and c:
//   margin_j = sum_f W_jf x_f + c_j ~ sw_j * acc_j + (c_j - sw_j * sum_f qa_jf zp_f),
//   acc_j = sum_f qa_jf q_f, qa_jf = round(W_jf s_f / sw_j) (symmetric per output j);
// the offset also absorbs the weights' rounding error at the calibration rows' mean codes.
#include <cmath>

#include "lowering.hpp"

namespace veil::ml::detail {

QuantizedModel lower_linear(const Model& model, const LinearModel& lin, const Matrix& calibration,
                            const QuantizationOptions& options) {
  const std::size_t nf = model.n_features, k = lin.coef.size();
  // Fold the preprocessing, last transform first: W.(mul x + add) = (W mul).x + W.add.
  std::vector<std::vector<double>> w = lin.coef;
  std::vector<double> c = lin.intercept;
  for (auto t = model.preprocessing.rbegin(); t != model.preprocessing.rend(); ++t)
    for (std::size_t j = 0; j < k; ++j)
      for (std::size_t f = 0; f < nf; ++f) {
        c[j] += w[j][f] * t->add[f];
        w[j][f] *= t->mul[f];
      }

  std::vector<double> lo, hi;
  column_ranges(calibration, lo, hi);
  QuantizedModel out;
  Processing& p = out.processing;
  p.model_kind = "linear";
  p.input_shape = {1, static_cast<std::int64_t>(nf)};
  for (std::size_t f = 0; f < nf; ++f) p.input_quantizers.push_back(affine_quantizer(lo[f], hi[f], options.linear_input_bits));

  std::vector<double> mean_code(nf, 0.0);
  for (std::size_t r = 0; r < calibration.rows; ++r)
    for (std::size_t f = 0; f < nf; ++f)
      mean_code[f] += static_cast<double>(p.input_quantizers[f].quantize(calibration.at(r, f), "calibration feature " + std::to_string(f))) /
                      static_cast<double>(calibration.rows);
  circuit::Tensor weights({static_cast<std::int64_t>(nf), static_cast<std::int64_t>(k)},
                          std::vector<std::int64_t>(nf * k, 0));
  OutputDequantizer dq;
  dq.shape = {1, static_cast<std::int64_t>(k)};
  for (std::size_t j = 0; j < k; ++j) {
    std::vector<double> a(nf);
    double offset = c[j];
    for (std::size_t f = 0; f < nf; ++f) {
      const InputQuantizer& iq = p.input_quantizers[f];
      if (iq.q_min == iq.q_max) {
        offset += w[j][f] * iq.dequantize(iq.q_min);  // a constant feature: no weight
        a[f] = 0;
      } else {
        a[f] = w[j][f] * iq.scale;
      }
    }
    std::vector<std::int64_t> qa;
    const double sw = quantize_symmetric(a, options.linear_weight_bits, qa);
    for (std::size_t f = 0; f < nf; ++f) {
      weights.data[f * k + j] = qa[f];
      offset -= sw * static_cast<double>(qa[f]) * static_cast<double>(p.input_quantizers[f].zero_point);
      // Bias correction: the weight's rounding error times the mean code joins the offset.
      offset += (a[f] - sw * static_cast<double>(qa[f])) * mean_code[f];
    }
    dq.scale.push_back(sw);
    dq.offset.push_back(offset);
  }
  p.outputs.push_back(std::move(dq));
  p.aggregation = OutputAggregation::kNone;
  p.n_outputs = k;
  p.link = lin.link;

  circuit::CircuitBuilder b;
  const circuit::Value x = b.input(p.input_shape, options.linear_input_bits, false, "x");
  const circuit::Value acc = b.matmul(x, weights, "linear");
  b.output(acc, "margins");
  out.circuit = std::move(b).build();
  return out;
}

}  // namespace veil::ml::detail
