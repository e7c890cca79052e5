// LocalSearchQuantizer (LSQ / LSQ++) with faiss's names: constructor (d, M, nbits, search_type), the LSQ
// parameters as attributes, train / compute_codes / decode, and the algorithm's steps. The additive base
// (packing, LUTs, norms, codebooks) comes from def_additive_base.
#include <string>
#include <vector>

#include "bind_additive.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/serialization.h"

namespace tessera_py {

using PyLSQ = PyModel<tessera::LocalSearchQuantizer>;

namespace {

// Parameter attributes: read, and written under the model's lock.
template <class T>
void def_param(py::class_<PyLSQ>& cls, const char* name, T tessera::LocalSearchQuantizerParams::*field,
               const char* doc) {
  cls.def_property(
      name, [field](PyLSQ& r) { return r.q->params().*field; },
      [field](PyLSQ& r, T v) { write_locked(r, nullptr, [&] { r.q->params().*field = v; }); }, doc);
}

std::vector<int32_t> codes_copy(const tessera::LocalSearchQuantizer& q, py::handle codes, size_t n) {
  I32In c = unpacked_arg(q, codes);
  if (c.view.rows != n)
    throw_invalid("codes have " + std::to_string(c.view.rows) + " rows, x has " + std::to_string(n));
  return std::vector<int32_t>(c.view.data, c.view.data + n * q.num_codebooks());
}

py::array_t<int32_t> codes_array(const std::vector<int32_t>& c, size_t n, size_t M) {
  py::array_t<int32_t> out({py::ssize_t(n), py::ssize_t(M)});
  std::copy(c.begin(), c.end(), out.mutable_data());
  return out;
}

}  // namespace

std::unique_ptr<PyLSQ> adopt_lsq(std::unique_ptr<tessera::Quantizer>& q, const std::string& meta) {
  auto* lsq = dynamic_cast<tessera::LocalSearchQuantizer*>(q.get());
  if (!lsq) return nullptr;
  q.release();
  auto out = std::make_unique<PyLSQ>(std::shared_ptr<tessera::LocalSearchQuantizer>(lsq));
  out->metadata = json_loads(meta.empty() ? "{}" : meta);
  return out;
}

void bind_lsq(py::module_& m) {
  py::class_<PyLSQ> cls(m, "LocalSearchQuantizer",
                        "LSQ / LSQ++ additive quantization (Martinez et al., ECCV 2016 and 2018): x ≈ Σ_m C_m[c_m]\n"
                        "with M codebooks of 2^nbits codewords and the codes chosen jointly by iterated local\n"
                        "search around ICM. faiss's LocalSearchQuantizer surface and defaults: switch by changing\n"
                        "the import. docs/lsq.md describes the algorithm and where tessera differs.");
  const tessera::LocalSearchQuantizerParams defaults;
  cls.def(py::init([](size_t d, size_t M, size_t nbits, const py::object& search_type, size_t train_iters,
                      size_t encode_ils_iters, size_t train_ils_iters, size_t icm_iters, float p, float lambd,
                      size_t chunk_size, uint64_t random_seed, size_t nperts, bool update_codebooks_with_double,
                      const std::string& init, const std::string& annealing, bool final_refit,
                      bool encode_greedy_init, double codebook_cg_tol, const py::object& progress) {
            tessera::LocalSearchQuantizerParams prm;
            prm.train_iters = train_iters;
            prm.encode_ils_iters = encode_ils_iters;
            prm.train_ils_iters = train_ils_iters;
            prm.icm_iters = icm_iters;
            prm.p = p;
            prm.lambd = lambd;
            prm.chunk_size = chunk_size;
            prm.random_seed = random_seed;
            prm.nperts = nperts;
            prm.update_codebooks_with_double = update_codebooks_with_double;
            prm.init = tessera::parse_lsq_init(init);
            prm.annealing = tessera::parse_lsq_annealing(annealing);
            prm.final_refit = final_refit;
            prm.encode_greedy_init = encode_greedy_init;
            prm.codebook_cg_tol = codebook_cg_tol;
            if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
              throw py::type_error("progress must be a callable or None");
            auto r = std::make_unique<PyLSQ>(std::make_shared<tessera::LocalSearchQuantizer>(
                d, M, nbits, prm, search_type_arg(search_type)));
            r->progress = progress;
            return r;
          }),
          "d"_a, "M"_a, "nbits"_a, "search_type"_a = 0, py::kw_only(), "train_iters"_a = defaults.train_iters,
          "encode_ils_iters"_a = defaults.encode_ils_iters, "train_ils_iters"_a = defaults.train_ils_iters,
          "icm_iters"_a = defaults.icm_iters, "p"_a = defaults.p, "lambd"_a = defaults.lambd,
          "chunk_size"_a = defaults.chunk_size, "random_seed"_a = defaults.random_seed, "nperts"_a = defaults.nperts,
          "update_codebooks_with_double"_a = defaults.update_codebooks_with_double,
          "init"_a = tessera::lsq_init_name(defaults.init),
          "annealing"_a = "codebooks", "final_refit"_a = false,
          "encode_greedy_init"_a = defaults.encode_greedy_init, "codebook_cg_tol"_a = defaults.codebook_cg_tol,
          "progress"_a = py::none(),
          "M codebooks of 2^nbits codewords (nbits in 1..16) for d-dimensional vectors. search_type: faiss's\n"
          "int or name (ST_decompress, ST_norm_float, ...). Beyond faiss, on by default because they lower the\n"
          "error (init='random', encode_greedy_init=False is faiss's behaviour): init='residual' starts training\n"
          "from a greedy residual quantizer's codes (init='auto', the default: for codebooks of more than 4 bits;\n"
          "random codes otherwise); encode_greedy_init=True starts encoding from greedy residual\n"
          "codes. Off by default: annealing='data' is LSQ++'s SR-C (noise on the data instead of the codebooks);\n"
          "final_refit=True refits the codebooks to the final training codes. codebook_cg_tol: training's\n"
          "codebook updates by conjugate gradients from the previous codebooks to this relative residual\n"
          "(0: the exact solve every iteration, as faiss).");
  def_param(cls, "train_iters", &tessera::LocalSearchQuantizerParams::train_iters, "Training iterations (25).");
  def_param(cls, "encode_ils_iters", &tessera::LocalSearchQuantizerParams::encode_ils_iters,
            "ILS steps when encoding (16).");
  def_param(cls, "train_ils_iters", &tessera::LocalSearchQuantizerParams::train_ils_iters,
            "ILS steps per training iteration (8).");
  def_param(cls, "icm_iters", &tessera::LocalSearchQuantizerParams::icm_iters, "ICM sweeps per ILS step (4).");
  def_param(cls, "p", &tessera::LocalSearchQuantizerParams::p, "Temperature decay exponent (0.5).");
  def_param(cls, "lambd", &tessera::LocalSearchQuantizerParams::lambd, "Ridge regularisation of the update (0.01).");
  def_param(cls, "chunk_size", &tessera::LocalSearchQuantizerParams::chunk_size, "Vectors per encoding chunk.");
  def_param(cls, "random_seed", &tessera::LocalSearchQuantizerParams::random_seed, "Seed (0x12345).");
  def_param(cls, "nperts", &tessera::LocalSearchQuantizerParams::nperts, "Codes perturbed per ILS step (4).");
  def_param(cls, "update_codebooks_with_double", &tessera::LocalSearchQuantizerParams::update_codebooks_with_double,
            "Solve the codebook update in double (True).");
  def_param(cls, "codebook_cg_tol", &tessera::LocalSearchQuantizerParams::codebook_cg_tol,
            "Relative residual of training's CG codebook updates (1e-5; 0: exact solves).");
  def_param(cls, "final_refit", &tessera::LocalSearchQuantizerParams::final_refit,
            "Refit the codebooks to the final training codes (False).");
  def_param(cls, "encode_greedy_init", &tessera::LocalSearchQuantizerParams::encode_greedy_init,
            "encode()/compute_codes() start from greedy residual codes instead of random ones.");
  cls.def_property(
         "init", [](PyLSQ& r) { return tessera::lsq_init_name(r.q->params().init); },
         [](PyLSQ& r, const std::string& v) {
           const auto i = tessera::parse_lsq_init(v);
           write_locked(r, nullptr, [&] { r.q->params().init = i; });
         },
         "How training starts: 'random' codes (faiss) or 'residual' (a greedy residual quantizer's codes).")
      .def_property(
          "annealing", [](PyLSQ& r) { return tessera::lsq_annealing_name(r.q->params().annealing); },
          [](PyLSQ& r, const std::string& v) {
            const auto a = tessera::parse_lsq_annealing(v);
            write_locked(r, nullptr, [&] { r.q->params().annealing = a; });
          },
          "Stochastic relaxation: 'codebooks' (SR-D, faiss) or 'data' (SR-C).")
      .def_property_readonly("K", [](PyLSQ& r) { return r.q->K(); }, "Codewords per codebook, 2^nbits.")
      .def(
          "train",
          [](PyLSQ& r, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            Progress prog(r.progress);
            write_locked(r, &prog, [&] {
              r.q->params().progress = prog.fn();
              struct Reset {
                tessera::LocalSearchQuantizer& q;
                ~Reset() { q.params().progress = nullptr; }
              } reset{*r.q};
              r.q->train(in.view);
            });
          },
          "x"_a, "LSQ++ training on x: n × d float32 (then the search type's norm encoder).")
      .def(
          "encode",
          [](PyLSQ& r, const py::object& x) {
            r.require_trained("encode");
            F32In in = check_dim(r, x, "x");
            py::array_t<int32_t> codes({py::ssize_t(in.view.rows), py::ssize_t(r.q->num_codebooks())});
            int32_t* out = codes.mutable_data();
            read_locked(r, [&] { r.q->encode(in.view, out); });
            return codes;
          },
          "x"_a, "Unpacked codes by ILS from random codes: x: n × d → n × M int32 (compute_codes packs them).")
      .def(
          "update_codebooks",
          [](PyLSQ& r, const py::object& x, const py::object& codes) {
            F32In in = check_dim(r, x, "x");
            const auto c = codes_copy(*r.q, codes, in.view.rows);
            write_locked(r, nullptr, [&] { r.q->update_codebooks(in.view, c.data()); });
          },
          "x"_a, "codes"_a, "Ridge least-squares codebooks for fixed codes: (BᵀB + λI)⁻¹BᵀX.")
      .def(
          "icm_encode",
          [](PyLSQ& r, const py::object& x, const py::object& codes, size_t ils_iters, uint64_t seed) {
            r.require_trained("icm_encode");
            F32In in = check_dim(r, x, "x");
            auto c = codes_copy(*r.q, codes, in.view.rows);
            read_locked(r, [&] { r.q->icm_encode(c.data(), in.view, ils_iters, seed); });
            return codes_array(c, in.view.rows, r.q->num_codebooks());
          },
          "x"_a, "codes"_a, "ils_iters"_a, "seed"_a = 0,
          "ILS from the given codes (n × M): returns the improved codes (a vector's codes change only when its\n"
          "squared error goes down).")
      .def(
          "icm_encode_step",
          [](PyLSQ& r, const py::object& codes, const py::object& unaries, const py::object& binaries, size_t n_iters) {
            const size_t M = r.q->num_codebooks(), K = r.q->K();
            I32In c0 = unpacked_arg(*r.q, codes);
            const size_t n = c0.view.rows;
            auto c = codes_copy(*r.q, codes, n);
            auto u = floats_arg(unaries.attr("ravel")(), "unaries", M * n * K);
            auto b = floats_arg(binaries.attr("ravel")(), "binaries", M * M * K * K);
            without_gil(nullptr, [&] { r.q->icm_encode_step(c.data(), u.data(), b.data(), n, n_iters); });
            return codes_array(c, n, M);
          },
          "codes"_a, "unaries"_a, "binaries"_a, "n_iters"_a,
          "n_iters ICM sweeps on codes (n × M) given unaries (M × n × K) and binaries (M × M × K × K).")
      .def(
          "perturb_codes",
          [](PyLSQ& r, const py::object& codes, uint64_t seed) {
            I32In c0 = unpacked_arg(*r.q, codes);
            auto c = codes_copy(*r.q, codes, c0.view.rows);
            r.q->perturb_codes(c.data(), c0.view.rows, seed);
            return codes_array(c, c0.view.rows, r.q->num_codebooks());
          },
          "codes"_a, "seed"_a = 0, "Codes with nperts random positions of every row set to random codewords.")
      .def(
          "perturb_codebooks",
          [](PyLSQ& r, float T, const py::object& stddev, uint64_t seed) {
            auto s = floats_arg(stddev, "stddev", r.q->dim());
            std::vector<float> sd(s.data(), s.data() + s.size());
            write_locked(r, nullptr, [&] { r.q->perturb_codebooks(T, sd, seed); });
          },
          "T"_a, "stddev"_a, "seed"_a = 0, "Add N(0, (T·stddev_j/M)²) to coordinate j of every codeword.")
      .def(
          "compute_binary_terms",
          [](PyLSQ& r) {
            r.require_trained("compute_binary_terms");
            const size_t M = r.q->num_codebooks(), K = r.q->K();
            py::array_t<float> out({M, M, K, K});
            float* o = out.mutable_data();
            read_locked(r, [&] { r.q->compute_binary_terms(o); });
            return out;
          },
          "2⟨C_m1[k1], C_m2[k2]⟩ as an M × M × K × K float32 array.")
      .def(
          "compute_unary_terms",
          [](PyLSQ& r, const py::object& x) {
            r.require_trained("compute_unary_terms");
            F32In in = check_dim(r, x, "x");
            const size_t M = r.q->num_codebooks(), K = r.q->K(), n = in.view.rows;
            py::array_t<float> out({M, n, K});
            float* o = out.mutable_data();
            read_locked(r, [&] { r.q->compute_unary_terms(in.view, o); });
            return out;
          },
          "x"_a, "‖C_m[k]‖² − 2⟨x_i, C_m[k]⟩ as an M × n × K float32 array.")
      .def(
          "evaluate",
          [](PyLSQ& r, const py::object& codes, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            const auto c = codes_copy(*r.q, codes, in.view.rows);
            return read_locked(r, [&] { return r.q->evaluate(c.data(), in.view); });
          },
          "codes"_a, "x"_a, "Mean over vectors of ‖x_i − x'_i‖² (faiss's convention: per vector).")
      .def_property_readonly(
          "training_errors", [](PyLSQ& r) { return r.q->training_errors(); },
          "Mean squared error per vector after each training iteration's encoding.")
      .def(
          "save",
          [](PyLSQ& r, const py::object& path, const py::object& metadata) {
            r.require_trained("save");
            const std::string p = path_str(path);
            const std::string meta =
                metadata.is_none() ? "{}" : py::module_::import("json").attr("dumps")(metadata).cast<std::string>();
            read_locked(r, [&] { tessera::save_quantizer(*r.q, p, meta); });
          },
          "path"_a, "metadata"_a = py::none(), "Write the model (.tsq) atomically; metadata: a JSON-serialisable dict.")
      .def_property(
          "progress", [](PyLSQ& r) { return r.progress; },
          [](PyLSQ& r, const py::object& fn) {
            if (!fn.is_none() && !PyCallable_Check(fn.ptr())) throw py::type_error("progress must be a callable or None");
            r.progress = fn;
          },
          "Progress callable(stage, done, total, value) used by train, or None.")
      .def_property_readonly(
          "metadata", [](PyLSQ& r) { return r.metadata; }, "The metadata dict stored in the loaded file, or None.")
      .def("__repr__", [](PyLSQ& r) {
        return "LocalSearchQuantizer(d=" + std::to_string(r.q->dim()) + ", M=" + std::to_string(r.q->num_codebooks()) +
               ", nbits=" + std::to_string(r.q->nbits(0)) + ", search_type=" +
               tessera::search_type_name(r.q->search_type()) + ", trained=" + (r.q->is_trained() ? "True" : "False") +
               ")";
      });
  def_additive_base(cls);
}

}  // namespace tessera_py
