// Internal: the three lowerings behind compile_model, and helpers they share.
#pragma once

#include <vector>

#include "veil/circuit/circuit.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::ml::detail {

QuantizedModel lower_linear(const Model& model, const LinearModel& lin, const Matrix& calibration,
                            const QuantizationOptions& options);
QuantizedModel lower_trees(const Model& model, const TreeEnsemble& ens, const Matrix& calibration,
                           const QuantizationOptions& options);
QuantizedModel lower_network(const Model& model, const Network& net, const Matrix& calibration,
                             const QuantizationOptions& options);
QuantizedModel lower_knn(const Model& model, const NearestNeighbors& knn, const Matrix& calibration,
                         const QuantizationOptions& options);

// Unsigned affine quantizer of `bits` bits covering [lo, hi] (0 always representable when
// inside). `reserve_top` keeps the top code free (the missing-value code of trees).
InputQuantizer affine_quantizer(double lo, double hi, unsigned bits, bool reserve_top = false);

// Per-column min and max over the rows, ignoring NaN (0 for an all-NaN column).
void column_ranges(const Matrix& rows, std::vector<double>& lo, std::vector<double>& hi);

// Sets the range hint of every levelled node (add, sub, constants, matmul, conv2d, sum) that
// is not an approximate round_bits result to the range observed on `samples`, widened by
// `margin` times its span on each side (the analysis intersects it with the inferred range).
void set_range_hints(circuit::Circuit& circuit, const std::vector<std::vector<circuit::Tensor>>& samples, double margin);

// Symmetric quantization of `values` to `bits` bits (scale = max|v| / (2^(bits-1) - 1));
// returns the scale (1 when every value is 0) and writes the integers.
double quantize_symmetric(const std::vector<double>& values, unsigned bits, std::vector<std::int64_t>& q);

}  // namespace veil::ml::detail
