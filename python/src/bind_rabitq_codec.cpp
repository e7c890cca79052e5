// tessera.RaBitQuantizer: the Extended RaBitQ codec on its own (codes, decoding, the three query forms'
// estimates, code × code estimates), for users who keep codes outside an index (graphs, deduplication).
#include <memory>
#include <optional>
#include <shared_mutex>

#include "bind_additive.h"
#include "bind_quant.h"
#include "bind_rabitq.h"
#include "common.h"
#include "tessera/quant/rabitq_quantizer.h"

namespace tessera_py {

namespace {

using tessera::RaBitQuantizer;

struct PyRaBitQ {
  std::unique_ptr<RaBitQuantizer> q;
  mutable std::shared_mutex lock;  // train exclusive, everything else shared
  void require_trained(const char* what) const {
    if (!q->is_trained()) throw_invalid(std::string(what) + " needs a trained quantizer: call train() first");
  }
};

// values, bounds: two float32 arrays of `shape`.
py::tuple estimate_arrays(std::vector<py::ssize_t> shape, const std::vector<float>& v, const std::vector<float>& b) {
  py::array_t<float> V(shape), B(shape);
  std::copy(v.begin(), v.end(), V.mutable_data());
  std::copy(b.begin(), b.end(), B.mutable_data());
  return py::make_tuple(V, B);
}

}  // namespace

void bind_rabitq_codec(py::module_& m) {
  using R = PyRaBitQ;
  py::class_<R>(m, "RaBitQuantizer",
                "The Extended RaBitQ codec (Gao et al., SIGMOD 2025; RaBitQ, SIGMOD 2024): a random rotation, then\n"
                "`bits` bits per coordinate of each vector's residual from the training mean (Algorithm 1, exact),\n"
                "with the per-code factors of the unbiased estimators. metric: 'l2', 'ip' or 'cosine' (vectors\n"
                "and queries normalised first; a zero vector has cosine 0 with everything).")
      .def(py::init([](py::ssize_t d, int bits, const std::string& metric, const std::string& rotation,
                       bool fast_quantization, double epsilon0, uint64_t seed) {
             if (d < 1) throw_invalid("d must be at least 1, got " + std::to_string(d));
             auto r = std::make_unique<R>();
             r->q = std::make_unique<RaBitQuantizer>(
                 size_t(d), rabitq_params(bits, metric, rotation, fast_quantization, epsilon0, seed));
             return r;
           }),
           "d"_a, "bits"_a = 4, "metric"_a = "l2", "rotation"_a = "hadamard", "fast_quantization"_a = false,
           "epsilon0"_a = 1.9, "seed"_a = 0x12345)
      .def_property_readonly("d", [](const R& r) { return r.q->dim(); })
      .def_property_readonly("bits", [](const R& r) { return r.q->params().bits; })
      .def_property_readonly("metric", [](const R& r) { return tessera::metric_name(r.q->params().metric); })
      .def_property_readonly("code_size", [](const R& r) { return r.q->code_size(); }, "Bytes per packed code.")
      .def_property_readonly("is_trained", [](const R& r) { return r.q->is_trained(); })
      .def_property_readonly(
          "centroid",
          [](const R& r) {
            r.require_trained("centroid");
            const auto& c = r.q->centroid();
            py::array_t<float> out(py::ssize_t(c.size()));
            std::copy(c.begin(), c.end(), out.mutable_data());
            return out;
          },
          "The centroid codes are taken against (the training mean): d float32.")
      .def(
          "train",
          [](R& r, const py::object& x) {
            F32In in = check_dim(r.q->dim(), x, "x");
            without_gil(nullptr, [&] {
              std::unique_lock g(r.lock);
              r.q->train(in.view);
            });
          },
          "x"_a, "The centroid (the mean of x, n × d) and the rotation (drawn from the seed).")
      .def(
          "compute_codes",
          [](const R& r, const py::object& x) {
            r.require_trained("compute_codes");
            F32In in = check_dim(r.q->dim(), x, "x");
            py::array_t<uint8_t> out({py::ssize_t(in.view.rows), py::ssize_t(r.q->code_size())});
            uint8_t* o = out.mutable_data();
            without_gil(nullptr, [&] {
              std::shared_lock g(r.lock);
              tessera::check_finite(in.view, "x");
              r.q->encode_packed(in.view, o);
            });
            return out;
          },
          "x"_a, "Packed codes of x (n × d): n × code_size uint8.")
      .def(
          "decode",
          [](const R& r, const py::object& codes) {
            r.require_trained("decode");
            py::array a = packed_arg(codes, r.q->code_size());
            const size_t n = size_t(a.shape(0));
            py::array_t<float> out({py::ssize_t(n), py::ssize_t(r.q->dim())});
            float* o = out.mutable_data();
            const auto* p = static_cast<const uint8_t*>(a.data());
            without_gil(nullptr, [&] {
              std::shared_lock g(r.lock);
              r.q->decode_packed(p, n, o);
            });
            return out;
          },
          "codes"_a, "Reconstructions of packed codes: n × d float32.")
      .def(
          "estimate",
          [](const R& r, const py::object& q, const py::object& codes, std::optional<int> query_bits, bool msb_only,
             uint64_t seed) {
            r.require_trained("estimate");
            F32In in = check_dim(r.q->dim(), q, "q");
            py::array a = packed_arg(codes, r.q->code_size());
            if (query_bits && (*query_bits < 1 || *query_bits > 8))
              throw_invalid("query_bits must be in 1..8, got " + std::to_string(*query_bits));
            const size_t nq = in.view.rows, n = size_t(a.shape(0)), cs = r.q->code_size();
            const auto* p = static_cast<const uint8_t*>(a.data());
            std::vector<float> v(nq * n), b(nq * n);
            without_gil(nullptr, [&] {
              std::shared_lock g(r.lock);
              tessera::check_finite(in.view, "q");
              for (size_t i = 0; i < nq; ++i) {
                if (query_bits) {
                  const auto pq = r.q->prepare_quantized_query(in.view.row(i), *query_bits, seed + i);
                  for (size_t j = 0; j < n; ++j) {
                    const auto e = r.q->estimate(pq, p + j * cs, msb_only);
                    v[i * n + j] = e.value;
                    b[i * n + j] = e.bound;
                  }
                } else {
                  const auto pq = r.q->prepare_query(in.view.row(i));
                  for (size_t j = 0; j < n; ++j) {
                    const auto e = r.q->estimate(pq, p + j * cs, msb_only);
                    v[i * n + j] = e.value;
                    b[i * n + j] = e.bound;
                  }
                }
              }
            });
            return estimate_arrays({py::ssize_t(nq), py::ssize_t(n)}, v, b);
          },
          "q"_a, "codes"_a, "query_bits"_a = py::none(), "msb_only"_a = false, "seed"_a = 0,
          "The metric's unbiased estimate between every query (q: nq × d) and every code (n × code_size):\n"
          "(values, bounds), each nq × n float32; the true value lies within ±bound for about 94% of pairs at\n"
          "epsilon0 = 1.9. query_bits: scalar-quantise each query to that many bits (randomised rounding from\n"
          "seed + query row; None: the float query). msb_only: from the codes' top bit (1-bit RaBitQ) alone.")
      .def(
          "estimate_between",
          [](const R& r, const py::object& codes_x, const py::object& codes_y, bool msb_only) {
            r.require_trained("estimate_between");
            py::array ax = packed_arg(codes_x, r.q->code_size()), ay = packed_arg(codes_y, r.q->code_size());
            if (ax.shape(0) != ay.shape(0))
              throw_invalid("codes_x and codes_y must have as many rows, got " + std::to_string(ax.shape(0)) +
                            " and " + std::to_string(ay.shape(0)));
            const size_t n = size_t(ax.shape(0)), cs = r.q->code_size();
            const auto* px = static_cast<const uint8_t*>(ax.data());
            const auto* py_ = static_cast<const uint8_t*>(ay.data());
            std::vector<float> v(n), b(n);
            without_gil(nullptr, [&] {
              std::shared_lock g(r.lock);
              for (size_t i = 0; i < n; ++i) {
                const auto e = r.q->estimate_between(px + i * cs, py_ + i * cs, nullptr, msb_only);
                v[i] = e.value;
                b[i] = e.bound;
              }
            });
            return estimate_arrays({py::ssize_t(n)}, v, b);
          },
          "codes_x"_a, "codes_y"_a, "msb_only"_a = false,
          "Code × code (data as query): the metric between the vectors of codes_x[i] and codes_y[i] from their\n"
          "codes alone: (values, bounds), n float32 each.");
}

}  // namespace tessera_py
