// The codec base: a Quantizer maps d-dimensional float vectors to compact codes and back. Codecs are
// not indexes (as in faiss: impl/Quantizer.h); search structures wrap codecs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/core/matrix.h"

namespace tessera {

class Quantizer {
 public:
  explicit Quantizer(size_t d) : d_(d) {}
  virtual ~Quantizer() = default;

  size_t dim() const { return d_; }
  /// A stable name of the codec type, stored in model files ("residual", ...).
  virtual std::string type_name() const = 0;
  virtual bool is_trained() const = 0;
  /// Learn the codec from x (n × d).
  virtual void train(MatrixView<const float> x) = 0;

  /// Bytes per packed code.
  virtual size_t code_size() const = 0;
  /// codes: n × code_size() packed bytes for x (n × d).
  virtual void encode_packed(MatrixView<const float> x, uint8_t* codes) const = 0;
  /// out: n × d reconstructions of n packed codes.
  virtual void decode_packed(const uint8_t* codes, size_t n, float* out) const = 0;

 protected:
  /// Throws InvalidArgument unless x has this codec's dimension (and is finite).
  void check_input(MatrixView<const float> x, const char* what) const;

 private:
  size_t d_;
};

/// Σ‖x_i‖² and Σ‖x_i − y_i‖² in double: what mean_square and mean_squared_error divide by n·d (chunked
/// callers add them up).
double sum_square(MatrixView<const float> x);
double sum_squared_error(MatrixView<const float> x, MatrixView<const float> y);

/// Mean square per component, Σ‖x_i‖² / (n·d): the MSE of coding everything as zero.
double mean_square(MatrixView<const float> x);

/// Mean squared error per component, Σ‖x_i − y_i‖² / (n·d) (numpy: np.mean((x - y) ** 2)).
double mean_squared_error(MatrixView<const float> x, MatrixView<const float> y);

}  // namespace tessera
